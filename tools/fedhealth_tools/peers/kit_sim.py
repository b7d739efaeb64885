"""The kit's own run of a job on the peer runs' site folders: FLARE's simulator, every site in process.

``.venv/bin/python -m fedhealth_tools.peers.kit_sim --task heart --rounds 2 --out k.json`` runs the
job folder as shipped (only the rounds and "every site needed" changed,
:func:`fedhealth_tools.poc.variants.job_variant`) with
:class:`~fedhealth_tools.simulation.in_process_runner.InProcessSimulatorRunner` over the same
folders as the Flower runs (:mod:`fedhealth_tools.peers.sites`), and reports the same figures: the
kit's timing summary from its run record, the final global model's validation at each site (the
job's cross-site evaluation) and the client averages of accuracy and AUC, peak memory, wall time.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from fedhealth import constants as C  # noqa: E402
from fedhealth.constants import RUN_RECORD_FILE  # noqa: E402
from fedhealth.data.site_data import resolve_data_root  # noqa: E402
from fedhealth.reports.timing import round_timings, timing_summary  # noqa: E402
from fedhealth_tools.peers.measure import write_report  # noqa: E402
from fedhealth_tools.peers.meters import TreeMemory  # noqa: E402
from fedhealth_tools.peers.sites import JOBS, write_sites  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_WORK = Path("workspace") / "peers" / "kit_sim"
GLOBAL_MODEL = "SRV_"  # cross-site evaluation names the server's model SRV_<name>


def final_validation(cross: dict) -> dict[str, dict]:
    """``{site: metrics}`` of the final global model from FLARE's ``cross_val_results.json``."""
    out = {}
    for site, models in sorted(cross.items()):
        found = [m for name, m in models.items() if name.startswith(GLOBAL_MODEL)]
        if len(found) != 1:
            raise ValueError(
                f"site {site}: {len(found)} server models in the cross-site results; expected one."
            )
        out[site] = found[0]
    return out


def run(
    task: str,
    *,
    rounds: int = 0,
    sites: int = 4,
    out: Path | None = None,
    work: Path = DEFAULT_WORK,
) -> dict:
    """Run ``task``'s kit job on its site folders in the kit's in-process FLARE simulator.

    Raises:
        RuntimeError: the simulation failed or wrote no run record (its logs are under ``work``).
    """
    import torch

    torch.set_num_threads(1)
    from fedhealth_tools.poc.variants import job_variant
    from fedhealth_tools.simulation.in_process_runner import InProcessSimulatorRunner

    work = Path(work).resolve()
    if task == "heart" and sites != 4:
        return _scale(sites, rounds, out, work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    folders = write_sites(task, sites, work / "sites")
    job = job_variant(
        ROOT / "jobs" / JOBS[task], work / "job" / JOBS[task], rounds=rounds or None, min_sites=len(folders)
    )
    data = {site: resolve_data_root(folder) for site, folder in folders.items()}
    sim_root = work / "sim"
    runner = InProcessSimulatorRunner(str(job), str(sim_root), data)
    cwd, me = os.getcwd(), psutil.Process()
    started = time.time()
    try:
        with TreeMemory({"run": me.pid}) as memory:
            status = runner.run()
    finally:
        os.chdir(cwd)  # FLARE's simulator changes the working folder
    wall = time.time() - started
    run_dir = sim_root / "server" / "simulate_job"
    record_file = run_dir / RUN_RECORD_FILE
    if status != 0 or not record_file.is_file():
        raise RuntimeError(
            f"the kit's simulation of {task} ended with status {status}; logs under {sim_root}"
        )
    record = json.loads(record_file.read_text())
    final = final_validation(json.loads((run_dir / "cross_site_val" / "cross_val_results.json").read_text()))
    report = {
        "framework": "fedhealth",
        "engine": "in_process_simulator",
        "task": task,
        "job": JOBS[task],
        "sites": len(folders),
        "wall_s": wall,
        "peak_mem_mb": memory.result()["peak_total_mb"],
        **timing_summary(record),
        "per_round": round_timings(record),
        "final": final,
        "load_avg": os.getloadavg(),
    }
    for key in (C.M_ACCURACY, C.M_AUC):
        values = [m[key] for m in final.values() if m.get(key) is not None]
        report[f"client_avg_{key}"] = float(np.mean(values)) if values else None
    return write_report(report, out)


def _scale(sites: int, rounds: int, out: Path | None, work: Path) -> dict:
    """Many synthetic heart sites: the scale run (:func:`~fedhealth_tools.simulation.run.run_simulation`).

    The same shards as the Flower run (the same function and seed); no cross-site evaluation (it is
    ``n x (n + 1)`` validations and not part of a round), so no final metrics.
    """
    from fedhealth_tools.simulation.run import run_simulation

    me = psutil.Process()
    with TreeMemory({"run": me.pid}) as memory:
        result = run_simulation(ROOT / "jobs" / JOBS["heart"], work, n_sites=sites, rounds=rounds or 3)
    report = {
        "framework": "fedhealth",
        "engine": "in_process_simulator",
        "task": "heart",
        "job": JOBS["heart"],
        **{k: v for k, v in result.items() if k != "record"},
        "peak_mem_mb": memory.result()["peak_total_mb"],
        "load_avg": os.getloadavg(),
    }
    return write_report(report, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(JOBS), default="heart")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (0: the job's)")
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(args.task, rounds=args.rounds, sites=args.sites, out=args.out, work=args.work)
    print(json.dumps({k: v for k, v in report.items() if k not in ("per_round", "final")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
