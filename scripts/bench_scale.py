"""Speed and scale: the POC round overhead per model size, and many simulated sites on one machine.

Run as ``python scripts/bench_scale.py --out results/bench_scale.json`` (``make bench-scale``), or
with ``--quick`` for a short check. Every number comes from the kit's own timing records: the server's
round start/end stamps and each site's train-task seconds (:mod:`fedhealth.reports.timing`).

* POC (real server and four site processes, mTLS): the heart job as shipped (fast settings) and with
  FLARE's stock settings (:func:`fedhealth_tools.poc.fast_settings.stock_variant`), for the heart model
  (logistic regression, 15 parameters) and MLPs of about 10k, 1M and 10M parameters (2 local steps a
  round, so that two cores finish them). Overhead = round
  wall time minus the slowest site's own task time (median over the rounds after the first); the
  start-up cost is submission to the first training round (job processes, federated statistics).
* Simulation (:mod:`fedhealth_tools.simulation`): the same job on 4 ... 256 synthetic sites, every client
  in one process; seconds a round and peak memory, each size in a fresh process; and 16 sites with
  the 10k, 1M and 10M-parameter models. FLARE's stock
  simulator (a worker process per client, 4 threads) at 16 sites, one round, bounded by a timeout.

The machine's load average is recorded with the timings: numbers taken on a busy machine are inflated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from fedhealth.reports.run_report import find_run_files
from fedhealth.reports.timing import timing_summary
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.fast_settings import stock_variant
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.variants import heart_poc
from fedhealth_tools.simulation.run import simulation_job

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "jobs" / "heart_fedavg"
# Model sizes: the heart job's own logistic regression, then TabularNet MLPs (16 * hidden + 1 weights).
MODELS = {"heart_logreg_15": None, "mlp_10k": 625, "mlp_1m": 62_500, "mlp_10m": 625_000}
FULL = {
    "poc_rounds": 5,
    "models": list(MODELS),
    "sites": [4, 16, 64, 100, 256],
    "sim_rounds": 4,
    "sim_models": ["mlp_10k", "mlp_1m", "mlp_10m"],
    "sim_model_sites": 16,
    "stock_sim": 16,
}
QUICK = {
    "poc_rounds": 3,
    "models": ["heart_logreg_15", "mlp_1m"],
    "sites": [4, 16, 100],
    "sim_rounds": 3,
    "stock_sim": 0,
}
STOCK_SIM_TIMEOUT_S = 420
MLP_LOCAL_STEPS = 2  # wide models train 2 optimizer steps a round: the overhead, not training, is measured


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def poc_overheads(models: list[str], rounds: int, work: Path) -> dict:
    """Each model size, fast and stock settings, one job after the other on one POC federation."""
    layout = heart_poc(ROOT / "provision" / "poc.yml", work / "poc")
    out: dict = {}
    with PocProcesses(layout, work / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=120, check=procs.check_alive)
            for model in models:
                for settings in ("fast", "stock"):
                    name = f"{model}_{settings}"
                    job = simulation_job(
                        JOB,
                        work / "jobs" / name / "heart_fedavg",
                        n_sites=4,
                        rounds=rounds,
                        hidden=MODELS[model],
                        local_steps=None if MODELS[model] is None else MLP_LOCAL_STEPS,
                    )
                    if settings == "stock":
                        job = stock_variant(job, work / "jobs" / f"{name}_s" / "heart_fedavg")
                    load = os.getloadavg()
                    submitted = time.time()
                    job_id = admin.submit(job, work / "submit")
                    status = admin.follow(
                        job_id, on_progress=lambda p: None, check=procs.check_alive, timeout=900
                    )
                    record, _ = find_run_files(admin.download(job_id, work / "downloads" / job_id))
                    summary = timing_summary(record)
                    first = record["round_times"][0]["started"] if record.get("round_times") else None
                    summary["submit_to_first_round_s"] = None if first is None else first - submitted
                    out.setdefault(model, {})[settings] = {"status": status, **summary, "load_avg": load}
                    print(f"POC {name}: {json.dumps(out[model][settings])}", flush=True)
    return out


def simulate(
    sites: int,
    rounds: int,
    work: Path,
    *,
    stock: bool = False,
    model: str | None = None,
    timeout: float = 900,
    job: Path = JOB,
) -> dict:
    """One simulation of ``job`` in a fresh process (its peak memory its own); FLARE's logs go to a file."""
    work.mkdir(parents=True, exist_ok=True)
    name = f"sim_{'stock' if stock else 'inproc'}_{job.name}_{sites}{'_' + model if model else ''}"
    out, log = work / f"{name}.json", work / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "fedhealth_tools.simulation.run",
        "--job",
        str(job),
        "--sites",
        str(sites),
    ]
    command += ["--rounds", str(rounds), "--workspace", str(work / f"ws_{name}"), "--out", str(out)]
    if model and MODELS[model] is not None:
        command += ["--hidden", str(MODELS[model]), "--local-steps", str(MLP_LOCAL_STEPS)]
    command += ["--stock"] if stock else []
    load = os.getloadavg()
    started = time.time()
    with log.open("w") as handle:
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            return {"sites": sites, "timed_out": True, "wall_s": time.time() - started, "load_avg": load}
    if proc.returncode != 0 or not out.is_file():
        return {
            "sites": sites,
            "failed": True,
            "returncode": proc.returncode,
            "log": str(log),
            "load_avg": load,
        }
    result = json.loads(out.read_text())
    result.pop("record", None)
    result["load_avg"] = load
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_scale.json")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, model sizes and site counts")
    parser.add_argument("--skip-poc", action="store_true")
    parser.add_argument(
        "--skip-stock-sim", action="store_true", help="leave out the stock simulator baseline"
    )
    parser.add_argument(
        "--models", nargs="*", choices=list(MODELS), help="POC model sizes (default: the plan's)"
    )
    parser.add_argument("--sites", nargs="*", type=int, help="simulated site counts (default: the plan's)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fedhealth_bench_scale"))
    args = parser.parse_args()
    plan = dict(QUICK if args.quick else FULL)
    plan.update({k: v for k, v in (("models", args.models), ("sites", args.sites)) if v is not None})
    if args.skip_stock_sim:
        plan["stock_sim"] = 0
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    report: dict = {
        "hardware": hardware(),
        "quick": args.quick,
        "plan": plan,
        "load_avg_start": os.getloadavg(),
    }
    if not args.skip_poc:
        poc = poc_overheads(plan["models"], plan["poc_rounds"], args.work / "poc")
        report["poc"] = poc
        report["poc_round_overhead_s"] = {m: v["fast"]["overhead_s"] for m, v in poc.items()}
        report["poc_round_overhead_stock_s"] = {m: v["stock"]["overhead_s"] for m, v in poc.items()}
    simulation = []
    for sites in plan["sites"]:
        row = simulate(sites, plan["sim_rounds"], args.work / "sim")
        print(
            f"simulation {sites} sites: {json.dumps({k: v for k, v in row.items() if k != 'per_round'})}",
            flush=True,
        )
        simulation.append(row)
    report["simulation"] = simulation
    report["sites"] = [r["sites"] for r in simulation]
    report["round_s"] = [r.get("round_s") for r in simulation]
    report["rounds_per_s"] = [1 / r["round_s"] if r.get("round_s") else None for r in simulation]
    report["peak_mem_gb"] = [r.get("peak_mem_gb") for r in simulation]
    for model in plan.get("sim_models", []):
        row = simulate(plan["sim_model_sites"], plan["sim_rounds"], args.work / "sim", model=model)
        row["model"] = model
        print(
            f"simulation {model}: {json.dumps({k: v for k, v in row.items() if k != 'per_round'})}",
            flush=True,
        )
        report.setdefault("simulation_models", []).append(row)
    if plan["stock_sim"]:
        stock = simulate(plan["stock_sim"], 1, args.work / "sim", stock=True, timeout=STOCK_SIM_TIMEOUT_S)
        print(
            f"stock simulator: {json.dumps({k: v for k, v in stock.items() if k != 'per_round'})}", flush=True
        )
        report["stock_simulator"] = stock
    report["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
