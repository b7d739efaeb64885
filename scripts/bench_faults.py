"""Fault run: the heart job on four hospitals in real POC mode, once clean and once per fault.

Run as ``python scripts/bench_faults.py --out results/bench_faults.json`` (``make bench-faults``).

Scenarios: clean; a site killed mid-job; one site sending NaN weights; one sending every weight
x100; one site 10x slower than the others (its result held back past the round's wait). Every
scenario uses the same resilient job settings: 3 of 4 sites per round, 3 s wait after the
minimum, bounded cross-site evaluation. For each: whether the job completed, rounds completed,
final client-average accuracy vs the clean run, which updates were rejected, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from fedhealth.constants import HEART_SITES
from fedhealth.poc.drills import run_drill, set_heartbeat_timeout
from fedhealth.poc.processes import free_port
from fedhealth.poc.variants import job_variant, project_on_port
from fedhealth.poc.workspace import PocError, prepare_workspace, write_heart_data
from fedhealth.reports.run_report import build_report, find_run_files

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 10
FAULTY = "va_long_beach"
KILLED = "switzerland"
RESILIENT = {"rounds": ROUNDS, "min_sites": 3, "wait_after_min_s": 3, "cse_timeout_s": 20}
SCENARIOS = {
    "clean": {},
    "killed_site": {"kill_site": KILLED},
    "nan_site": {"faulty_site": FAULTY, "fault": {"mode": "nan"}},
    "scaled_x100_site": {"faulty_site": FAULTY, "fault": {"mode": "scale", "factor": 100.0}},
    "slow_10x_site": {"faulty_site": FAULTY, "fault": {"mode": "slow", "delay_s": 6.0}},
}


def run_scenario(name: str, spec: dict, layout, work: Path) -> dict:
    """One scenario on the provisioned federation; the numbers that go into the JSON."""
    job = job_variant(
        ROOT / "jobs" / "heart_fedprox",
        work / "jobs" / name / "heart_fedprox",
        faulty_site=spec.get("faulty_site"),
        fault=spec.get("fault"),
        **RESILIENT,
    )
    try:
        status, result, seconds = run_drill(
            layout, job, workspace=work / name, kill_site=spec.get("kill_site")
        )
    except PocError as exc:
        return {"completed": False, "error": str(exc)}
    record, cross = find_run_files(result)
    report = build_report("heart_fedprox", record, cross)
    accuracies = {s["name"]: s["accuracy"] for s in report["sites"] if s["accuracy"] is not None}
    return {
        "completed": status == "FINISHED:COMPLETED",
        "status": status,
        "rounds": report["rounds"],
        "metric": sum(accuracies.values()) / len(accuracies) if accuracies else None,
        "per_site": accuracies,
        "rejected_updates": report["rejected_updates"],
        "participation": {s: p["rate"] for s, p in report["participation"].items()},
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_faults.json")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    args = parser.parse_args(argv)
    work = ROOT / "workspace" / "bench_faults"
    shutil.rmtree(work, ignore_errors=True)
    start = time.monotonic()
    project = project_on_port(ROOT / "project.yml", work / "project.yml", free_port())
    layout = prepare_workspace(project, work / "poc")
    write_heart_data(layout)
    set_heartbeat_timeout(layout, 30)
    results = {}
    for name in args.only or SCENARIOS:
        print(f"scenario {name} ...", flush=True)
        results[name] = run_scenario(name, SCENARIOS[name], layout, work)
    clean = results.get("clean", {}).get("metric")
    for row in results.values():
        row["metric_clean"] = clean
    print(
        f"\n{'scenario':18s} {'completed':>9s} {'rounds':>6s} {'metric':>7s} {'clean':>7s} "
        f"{'rejected':>8s} {'s':>5s}"
    )
    for name, row in results.items():
        metric = "-" if row.get("metric") is None else f"{row['metric']:.3f}"
        ref = "-" if clean is None else f"{clean:.3f}"
        print(
            f"{name:18s} {str(row['completed']):>9s} {row.get('rounds', 0):6d} {metric:>7s} {ref:>7s} "
            f"{len(row.get('rejected_updates', [])):8d} {row.get('seconds', 0):5.0f}"
        )
    hardware = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    record = {
        "scenarios": results,
        "rounds_configured": ROUNDS,
        "sites": list(HEART_SITES),
        "settings": RESILIENT,
        "hardware": hardware,
        "seconds": time.monotonic() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out} in {record['seconds']:.0f} s on {hardware}")


if __name__ == "__main__":
    main()
