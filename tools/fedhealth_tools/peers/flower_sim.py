"""The kit's heart and CXR jobs as Flower apps in Flower's simulation engine (Ray), one process tree.

``.venv-flower/bin/python -m fedhealth_tools.peers.flower_sim --task heart --rounds 3 --out x.json``
writes the sites' folders under ``--work`` (:mod:`fedhealth_tools.peers.sites`), runs
``flwr.simulation.run_simulation`` with the apps of :mod:`fedhealth.flower` (every setting from the
job folder; ``--rounds`` 0 keeps the job's), and writes one JSON object: the app's results (rounds,
per-site train seconds, bytes, final per-site validation), the kit's timing summary of them
(:func:`fedhealth_tools.peers.measure.summary`: ``round_s`` is the median round after the first),
the wall time and the peak resident memory of this process and all its descendants (Ray's GCS,
raylet and worker processes), sampled every 0.2 s.

Ray gets ``--cpus`` CPUs and each simulated site one, so that many sites train at once; every
process trains on one thread (``OMP_NUM_THREADS=1``, set before torch is imported).
"""

# ruff: noqa: E402  (the thread caps must be set before torch and Ray start)
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import psutil

from fedhealth_tools.peers.measure import summary, write_report
from fedhealth_tools.peers.meters import TreeMemory
from fedhealth_tools.peers.sites import JOBS, sites_file, write_sites

DEFAULT_WORK = Path("workspace") / "peers" / "flower_sim"


def run(
    task: str,
    *,
    rounds: int = 0,
    sites: int = 4,
    out: Path | None = None,
    work: Path = DEFAULT_WORK,
    job_dir: Path | None = None,
    cpus: int = 2,
) -> dict:
    """Run ``task``'s kit job as Flower apps in the simulation engine; returns the results dict.

    Args:
        task: ``heart`` (``jobs/heart_fedprox``) or ``cxr`` (``jobs/cxr_fedavg``).
        rounds: rounds (0: the job's own).
        sites: simulated sites (heart: 4 hospitals, any other number synthetic shards).
        out: where to write the JSON (``None``: not written).
        work: a scratch folder (wiped first), inside the repository's ``workspace/``.
        job_dir: another job folder of the same task (default: the kit's ``jobs/<job>``).
        cpus: CPUs Ray may use (one per simulated site at a time).

    Raises:
        RuntimeError: the simulation did not write its results (Flower's log says why).
    """
    import torch

    torch.set_num_threads(1)
    from flwr.simulation import run_simulation

    from fedhealth.flower.apps_factory import client_app_for, server_app_for

    work = Path(work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    folders = write_sites(task, sites, work / "sites")
    results_file = work / "results.json"
    overrides = {
        "sites-file": str(sites_file(folders, work / "sites.json")),
        "results": str(results_file),
        "num-rounds": int(rounds),
        "min-sites": len(folders),
    }
    if job_dir is not None:
        overrides["job-dir"] = str(Path(job_dir).resolve())
    backend = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "log_to_driver": False},
    }
    me = psutil.Process()
    started = time.time()
    with TreeMemory({"run": me.pid}) as memory:
        run_simulation(
            server_app=server_app_for(JOBS[task], overrides),
            client_app=client_app_for(JOBS[task], overrides),
            num_supernodes=len(folders),
            backend_config=backend,
        )
    wall = time.time() - started
    if not results_file.is_file():
        raise RuntimeError(f"the Flower simulation of {task} wrote no results ({results_file}); see its log.")
    results = json.loads(results_file.read_text())
    report = {
        "framework": "flower",
        "flwr": __import__("flwr").__version__,
        "engine": "simulation",
        "task": task,
        "job": results["job"],
        "wall_s": wall,
        "startup_s_from_call": results["round_times"][0]["started"] - started
        if results["round_times"]
        else None,
        "peak_mem_mb": memory.result()["peak_total_mb"],
        **summary(results),
        "load_avg": os.getloadavg(),
        "results": results,
    }
    return write_report(report, out)


def run_heart(engine: str = "simulation", rounds: int = 0, sites: int = 4, out: Path | None = None) -> dict:
    """Heart FedProx (``jobs/heart_fedprox``) in Flower; ``engine`` ``simulation`` or ``deployment``."""
    if engine == "deployment":
        from fedhealth_tools.peers.flower_deploy import run as deploy

        return deploy("heart", rounds=rounds, out=out)
    return run("heart", rounds=rounds, sites=sites, out=out)


def run_cxr(engine: str = "simulation", rounds: int = 0, out: Path | None = None) -> dict:
    """CXR FedAvg (``jobs/cxr_fedavg``) in Flower; ``engine`` ``simulation`` or ``deployment``."""
    if engine == "deployment":
        from fedhealth_tools.peers.flower_deploy import run as deploy

        return deploy("cxr", rounds=rounds, out=out)
    return run("cxr", rounds=rounds, out=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(JOBS), default="heart")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (0: the job's)")
    parser.add_argument(
        "--sites", type=int, default=4, help="simulated sites (heart only: != 4 is synthetic)"
    )
    parser.add_argument("--cpus", type=int, default=2, help="CPUs Ray may use")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(
        args.task, rounds=args.rounds, sites=args.sites, out=args.out, work=args.work, cpus=args.cpus
    )
    shown = {k: v for k, v in report.items() if k not in ("results", "per_round")}
    print(json.dumps(shown, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
