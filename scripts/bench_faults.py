"""Fault run: the heart job on four hospitals in real POC mode, once clean and once per fault.

Run as ``python scripts/bench_faults.py --out results/bench_faults.json`` (``make bench-faults``).

POC scenarios: clean; a site killed mid-job (then started again: it must rejoin); one site
sending NaN weights; one sending every weight x100; one site 10x slower than the others (its
result held back past the round's wait). Also, in the in-process twin (5 seeds): the accuracy
cost of each robust aggregation rule on clean updates and with one site sending x100 weights. Every
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
import signal
import time
from pathlib import Path

from fedhealth.constants import HEART_SITES
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.poc.drills import run_drill, run_restart_drill, set_heartbeat_timeout
from fedhealth_tools.poc.variants import FAULT_FILTER, heart_poc, job_variant
from fedhealth_tools.poc.workspace import PocError

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 10
FAULTY = "va_long_beach"
KILLED = "switzerland"
RESILIENT = {"rounds": ROUNDS, "min_sites": 3, "wait_after_min_s": 3, "cse_timeout_s": 20}
SCENARIOS = {
    "clean": {},
    "killed_site": {"kill_site": KILLED, "rejoin": True},
    "nan_site": {"faulty_site": FAULTY, "fault": {"mode": "nan"}},
    "scaled_x100_site": {"faulty_site": FAULTY, "fault": {"mode": "scale", "factor": 100.0}},
    "slow_10x_site": {"faulty_site": FAULTY, "fault": {"mode": "slow", "delay_s": 6.0}},
    "server_restart": {"restart_server": True},
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
        if spec.get("restart_server"):
            drill = run_restart_drill(layout, job, workspace=work / name)
        else:
            drill = run_drill(
                layout,
                job,
                workspace=work / name,
                kill_site=spec.get("kill_site"),
                rejoin=spec.get("rejoin", False),
            )
    except PocError as exc:
        return {"completed": False, "error": str(exc)}
    record, cross = find_run_files(drill.result)
    record = drill.record or record
    report = build_report("heart_fedprox", record, cross)
    accuracies = {s["name"]: s["accuracy"] for s in report["sites"] if s["accuracy"] is not None}
    return {
        "completed": drill.status == "FINISHED:COMPLETED",
        "status": drill.status,
        "rounds": report["rounds"],
        "metric": sum(accuracies.values()) / len(accuracies) if accuracies else None,
        "per_site": accuracies,
        "rejected_updates": report["rejected_updates"],
        "participation": {s: p["rate"] for s, p in report["participation"].items()},
        "seconds": drill.seconds,
        "killed_site_rejoined": drill.rejoined,
    }


RULES = {
    "mean": {},
    "median": {},
    "trimmed_mean": {"trim_fraction": 0.25},
    "clipped_mean": {"clip_norm": 0.5},
}
SEEDS = (42, 43, 44, 45, 46)


def robust_rule_costs() -> dict[str, dict]:
    """Each aggregation rule in the in-process twin of heart_fedprox (same settings, 5 seeds):
    client-average accuracy on clean updates and with one site sending every weight x100
    (no norm filter here, to show what the rule alone does)."""
    import numpy as np

    from fedhealth.data.site_data import RAW_COLUMNS, TARGET, SiteTable
    from fedhealth.models.tabular import TabularNet
    from fedhealth.training.heart_site import HeartSite
    from fedhealth_tools.data.heart_source import load_heart_sites
    from fedhealth_tools.training.federation import federated_scaling, run_federation

    splits = load_heart_sites()

    def table(df):
        return SiteTable(
            features=df[list(RAW_COLUMNS)].astype("float64"), labels=df[TARGET].to_numpy("float32")
        )

    def attack(site: str, state: dict) -> dict:
        return {k: v * 100.0 for k, v in state.items()} if site == FAULTY else state

    out = {}
    for rule, extra in RULES.items():
        for attacked in (False, True):
            scores = []
            for seed in SEEDS:
                sites = [HeartSite(n, table(sp.train), table(sp.test)) for n, sp in splits.items()]
                federated_scaling(sites)
                result = run_federation(
                    sites,
                    lambda seed=seed, n=sites[0].n_features: TabularNet(in_features=n, seed=seed),
                    rounds=19,
                    lr=0.03,
                    mu=1.0,
                    local_epochs=1,
                    batch_size=4,
                    seed=seed,
                    rule=rule,
                    rule_args=extra,
                    tamper=attack if attacked else None,
                )
                scores.append(np.mean([s.evaluate(result.model)["accuracy"] for s in sites]))
            out[f"{rule}{'_attacked' if attacked else ''}"] = {
                "rule": rule,
                "args": extra,
                "attacked": attacked,
                "client_avg": float(np.mean(scores)),
                "client_avg_sd": float(np.std(scores, ddof=1)),
            }
    return out


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_faults.json")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)  # a killed bench still stops every FLARE process it started
    work = ROOT / "workspace" / "bench_faults"
    shutil.rmtree(work, ignore_errors=True)
    start = time.monotonic()
    layout = heart_poc(ROOT / "provision" / "poc.yml", work, allow=[FAULT_FILTER])  # the drill filter
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
    rules = robust_rule_costs()
    print("\naggregation rule (in-process, 5 seeds)   clean   with a x100 site")
    for rule in RULES:
        clean_row, hit = rules[rule], rules[f"{rule}_attacked"]
        print(f"{rule:38s} {clean_row['client_avg']:.3f}   {hit['client_avg']:.3f}")
    hardware = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    record = {
        "scenarios": results,
        "robust_rules": rules,
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
