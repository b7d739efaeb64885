"""Every shipped heart job, run as it ships, one after another in one real POC federation.

Run as ``python scripts/bench_jobs.py --out results/bench_jobs.json`` (``make bench-jobs``). One POC
workspace from ``provision/poc.yml`` with TenSEAL contexts (for the HE jobs), four hospitals with
their own exports and mappings (``heart_poc``), the real server and site processes on 127.0.0.1;
each job is submitted unchanged by the project admin. Per job: its status, wall time from submission
to the end, and the report's figures (the final global model on every site's test split:
client-average and worst-site accuracy, per-site accuracy and AUC, the deployment gate). The job
READMEs quote these figures.

The sites run with the kit's default limits (no ``local/fedhealth_site.json`` limits), i.e. the floor
every hospital gets: batch >= 16, learning rate <= 1.0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.variants import heart_poc

ROOT = Path(__file__).resolve().parents[1]
HE_JOBS = ("heart_he", "heart_he_dp")


def heart_jobs() -> list[Path]:
    return sorted(p for p in (ROOT / "jobs").glob("heart_*") if (p / "meta.json").is_file())


def run_one(admin: AdminClient, job: Path, work: Path, timeout: float) -> dict:
    tic = time.monotonic()
    job_id = admin.submit(job, work / "submit")
    deadline = tic + timeout
    while not (status := admin.status(job_id)).startswith("FINISHED") and time.monotonic() < deadline:
        time.sleep(1.0)
    seconds = time.monotonic() - tic
    row: dict = {"status": status, "seconds": round(seconds, 1)}
    if status != "FINISHED:COMPLETED":
        return row
    record, cross = find_run_files(admin.download(job_id, work / "downloads" / job.name))
    report = build_report(job.name, record, cross)
    g = report["global"]
    row.update(
        client_avg_accuracy=g["client_avg_accuracy"],
        worst_site_accuracy=g["worst_site_accuracy"],
        per_site={
            s["name"]: {"accuracy": s.get("accuracy"), "auc": s.get("auc"), "n_test": s.get("n_test")}
            for s in report["sites"]
        },
        gate=report.get("deploy_decision"),  # the per-finding gate where a job has one
        rounds=report["rounds"],
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_jobs.json")
    parser.add_argument("--workspace", type=Path, default=ROOT / "workspace" / "bench_jobs")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one job may take")
    args = parser.parse_args(argv)
    start = time.monotonic()
    layout = heart_poc(ROOT / "provision" / "poc.yml", args.workspace, he=True)
    jobs: dict[str, dict] = {}
    with PocProcesses(layout, args.workspace / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            for job in heart_jobs():
                jobs[job.name] = run_one(admin, job, args.workspace, args.timeout)
                row = jobs[job.name]
                print(
                    f"{job.name:18s} {row['status']:22s} {row['seconds']:6.1f} s  "
                    f"client-avg {row.get('client_avg_accuracy') or float('nan'):.3f}  "
                    f"worst {row.get('worst_site_accuracy') or float('nan'):.3f}",
                    file=sys.stderr,
                    flush=True,
                )
    record = {
        "command": "make bench-jobs",
        "jobs": jobs,
        "hardware": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "load_average_at_end": os.getloadavg(),
        "seconds": round(time.monotonic() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")
    return 0 if all(r["status"] == "FINISHED:COMPLETED" for r in jobs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
