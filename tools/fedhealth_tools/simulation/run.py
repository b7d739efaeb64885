"""Run a kit job on many simulated sites in one process and report its rounds, time and memory.

``python -m fedhealth_tools.simulation.run --job jobs/heart_fedavg --sites 100 --rounds 3 --out r.json``
writes
one JSON object: the round timings from the job's own run record (:mod:`fedhealth.reports.timing`) and the
simulation process's peak memory. Each site gets a synthetic share of the heart data
(:mod:`fedhealth_tools.data.synthetic_sites`) in its own folder, named by its own ``local/`` setting.

The job is the shipped job with only what a federation of ``n`` sites changes: every site is needed
(``min_clients`` of the step before training, federated statistics or feature alignment, of
``ScatterAndGather`` and of the job) with no round deadline (``train_timeout`` 0: a round of many
simulated clients can take minutes), the number of rounds, and no cross-site evaluation
(``n x (n + 1)`` validations; it is not part of a round). Each synthetic site holds its files and
the ``mapping.json`` that reads them for task ``tabular``. Options ``hidden`` (a wider model,
:class:`fedhealth.models.tabular.TabularNet` as an MLP) and ``stock`` (FLARE's own simulator client
runner: one worker process per client) serve the benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

from fedhealth.constants import RUN_RECORD_FILE
from fedhealth.reports.timing import round_timings, timing_summary
from fedhealth_tools.data.synthetic_sites import write_synthetic_sites
from fedhealth_tools.poc.variants import job_variant

CROSS_SITE_EVAL = "nvflare.app_common.workflows.cross_site_model_eval.CrossSiteModelEval"
FED_STATS = "fedhealth.workflows.fed_stats_controller.FedStatsController"
ALIGNMENT = "fedhealth.workflows.ehr_alignment_controller.EhrAlignmentController"
PRE_TRAINING = (FED_STATS, ALIGNMENT)  # the workflows before training: they need every site too


def simulation_job(
    src: Path,
    dest: Path,
    *,
    n_sites: int,
    rounds: int,
    hidden: int | None = None,
    local_steps: int | None = None,
) -> Path:
    """A copy of the job ``src`` for ``n_sites`` simulated sites (see the module docstring).

    Args:
        hidden: make the model a TabularNet MLP with this many hidden units (the persistor's
            ``model_args``; the input width is the aligned schema's, or the model's own).
        local_steps: the executor's optimizer steps per round (benchmarks of wide models: the
            round's overhead, not its training, is what they measure).
    """
    job = job_variant(Path(src), Path(dest), rounds=rounds, min_sites=n_sites, train_timeout_s=0)
    config_file = job / "app" / "config" / "config_fed_server.json"
    config = json.loads(config_file.read_text())
    config["workflows"] = [w for w in config["workflows"] if w["path"] != CROSS_SITE_EVAL]
    for workflow in config["workflows"]:
        if workflow["path"] in PRE_TRAINING:
            workflow["args"]["min_clients"] = n_sites
    if hidden is not None:
        for component in config["components"]:
            args = component.get("args", {})
            model = args.get("model")
            if isinstance(args.get("model_args"), dict):  # TabularModelPersistor: width from the schema
                args["model_args"].update(arch="mlp", hidden=hidden)
            elif isinstance(model, dict) and model.get("path", "").endswith("TabularNet"):
                model["args"].update(arch="mlp", hidden=hidden)
    config_file.write_text(json.dumps(config, indent=2))
    if local_steps is not None:
        client_file = job / "app" / "config" / "config_fed_client.json"
        client = json.loads(client_file.read_text())
        for executor in client["executors"]:
            if "local_steps" in executor["executor"].get("args", {}):
                executor["executor"]["args"]["local_steps"] = local_steps
        client_file.write_text(json.dumps(client, indent=2))
    return job


def _peak_rss_gb() -> float:
    """Peak resident memory of this process and of the simulation process it waited for, in GB."""
    kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return kb / 1024**2


def run_simulation(
    job: Path,
    workspace: Path,
    *,
    n_sites: int,
    rounds: int,
    hidden: int | None = None,
    local_steps: int | None = None,
    stock: bool = False,
    seed: int = 0,
    extra_allow: list[str] | None = None,
    server_components: list[dict] | None = None,
) -> dict:
    """Simulate ``job`` on ``n_sites`` synthetic sites; returns timings, memory and the run record.

    Args:
        server_components: extra server components (``{id, path, args}``) for tests, e.g. a widget
            that captures the sites' updates; their class paths must also be in ``extra_allow``.

    Raises:
        RuntimeError: the simulation did not finish (the message names the workspace with the logs).
    """
    from fedhealth_tools.simulation.in_process_runner import InProcessSimulatorRunner

    workspace = Path(workspace).resolve()
    shutil.rmtree(workspace, ignore_errors=True)
    data = write_synthetic_sites(workspace / "data", n_sites, seed=seed)
    sim_job = simulation_job(
        job,
        workspace / "job" / Path(job).name,
        n_sites=n_sites,
        rounds=rounds,
        hidden=hidden,
        local_steps=local_steps,
    )
    if server_components:
        config_file = sim_job / "app" / "config" / "config_fed_server.json"
        config = json.loads(config_file.read_text())
        config["components"].extend(server_components)
        config_file.write_text(json.dumps(config, indent=2))
    sim_root = workspace / "sim"
    runner = InProcessSimulatorRunner(
        str(sim_job), str(sim_root), data, in_process=not stock, extra_allow=extra_allow
    )
    cwd = os.getcwd()
    started = time.time()
    try:
        status = runner.run()
    finally:
        os.chdir(cwd)  # FLARE's simulator changes the working folder
    wall = time.time() - started
    record_file = sim_root / "server" / "simulate_job" / RUN_RECORD_FILE
    if status != 0 or not record_file.is_file():
        raise RuntimeError(
            f"the simulation of {n_sites} sites ended with status {status}; logs are under {sim_root}"
        )
    record = json.loads(record_file.read_text())
    return {
        "sites": n_sites,
        "rounds": rounds,
        "runner": "flare_stock_simulator" if stock else "in_process",
        "hidden": hidden,
        "wall_s": wall,
        **timing_summary(record),
        "per_round": round_timings(record),
        "peak_mem_gb": _peak_rss_gb(),
        "status": record.get("status"),
        "record": str(record_file),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, default=Path("jobs/heart_fedavg"))
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--hidden", type=int, default=None, help="MLP hidden units (default: the job's model)"
    )
    parser.add_argument(
        "--stock", action="store_true", help="FLARE's own client runner (a process per client)"
    )
    parser.add_argument(
        "--local-steps", type=int, default=None, help="optimizer steps a round (default: job's)"
    )
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/fedhealth_sim"))
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here (FLARE logs to stdout)")
    args = parser.parse_args(argv)
    result = run_simulation(
        args.job,
        args.workspace,
        n_sites=args.sites,
        rounds=args.rounds,
        hidden=args.hidden,
        local_steps=args.local_steps,
        stock=args.stock,
    )
    result["load_avg"] = os.getloadavg()
    result["cpu"] = platform.processor() or platform.machine()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
