"""Side by side with Flower 1.42: the same federations in the kit (FLARE) and in Flower, in one run.

Run as ``python scripts/bench_peers.py --out results/bench_peers.json`` (``make bench-peers``), with
nothing else running. The Flower side runs in ``.venv-flower`` (``--flower-python``); the Flower
apps (:mod:`fedhealth.flower`) drive the kit's own FLARE-free site code with every setting read from
the kit's job folders, and both sides read the very same site folders
(:mod:`fedhealth_tools.peers.sites`). In order:

1. Real processes on 127.0.0.1. The kit: its POC federation (server + four sites, mutual TLS), the
   shipped ``heart_fedprox`` and ``cxr_fedavg`` and the heart job with a 1M-parameter MLP (2 local
   steps a round); Flower: its deployment engine (a SuperLink and four SuperNodes, no TLS) with the
   same three. Memory (peak PSS of every process of the federation) and TCP bytes per site are
   measured from outside the processes, the same way on both sides (:mod:`fedhealth_tools.peers.meters`).
2. Simulation. The kit's in-process FLARE simulator against Flower's simulation engine (Ray): heart
   and CXR on four sites (the final metrics must be those of step 1), and 100 synthetic heart shards.

Rows follow the issue: ``{"metric", "unit", "better", "fedhealth", "flower"}`` plus ``tolerance``
where two figures should agree (accuracy, AUC: the seed spread of the kit's FedProx in
``results/bench_heart.json``) and ``note``. Partial results are written after every step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench_scale import hardware

from fedhealth_tools.peers.kit_runs import KitJob, run_kit_jobs
from fedhealth_tools.peers.meters import run_measured
from fedhealth_tools.peers.sites import JOBS, write_sites
from fedhealth_tools.simulation.run import simulation_job

ROOT = Path(__file__).resolve().parents[1]
FLOWER_PYTHON = ROOT / ".venv-flower" / "bin" / "python"
MLP_1M = 62_500  # TabularNet hidden units: 16 * 62_500 + 62_501 ≈ 1.06M parameters (as bench-scale)
MLP_LOCAL_STEPS = 2
FULL = {"mlp_rounds": 5, "sim_sites": 100, "sim_rounds": 3, "rounds": 0}
QUICK = {"mlp_rounds": 3, "sim_sites": 16, "sim_rounds": 2, "rounds": 3}


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT / "custom"), str(ROOT / "tools"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _runner(python: Path, module: str, args: list[str], work: Path, name: str, timeout: float) -> dict:
    """A peer runner's CLI in a fresh process (its own environment); its JSON report."""
    out = work / f"{name}.json"
    command = [str(python), "-m", f"fedhealth_tools.peers.{module}", *args, "--out", str(out)]
    done = run_measured(command, work / f"{name}.log", timeout=timeout, env=_env())
    if done["returncode"] != 0 or not out.is_file():
        raise RuntimeError(f"{name}: {' '.join(command)} ended with {done['returncode']}; see {name}.log")
    report = json.loads(out.read_text())
    report["process_peak_mem_mb"] = done["peak_mem_mb"]
    report.pop("results", None)
    print(f"{name}: {json.dumps(_brief(report))}", flush=True)
    return report


def _brief(report: dict) -> dict:
    keys = ("round_s", "overhead_s", "client_avg_accuracy", "client_avg_auc", "peak_mem_mb", "load_avg")
    return {k: report.get(k) for k in keys}


def _wire_per_round(wire: dict, rounds: int) -> float:
    """Median over sites of (bytes sent + received) / rounds."""
    totals = [(r["bytes_sent"] + r["bytes_received"]) / max(rounds, 1) for r in wire.values()]
    return statistics.median(totals) if totals else None


def _seed_sd() -> float | None:
    """The seed spread (SD of client-average accuracy over 5 seeds) of the kit's heart FedProx."""
    path = ROOT / "results" / "bench_heart.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())["methods"]["kit_fedprox_logreg"].get("client_avg_sd")


def rows_of(report: dict) -> list[dict]:
    """The issue's table from the measured runs (``None`` where a run is missing)."""
    kit, flower = report.get("kit_poc", {}), report.get("flower_deploy", {})
    ksim, fsim = report.get("kit_sim", {}), report.get("flower_sim", {})
    sd = _seed_sd()

    def row(metric, unit, better, k, f, **extra) -> dict:
        return {"metric": metric, "unit": unit, "better": better, "fedhealth": k, "flower": f, **extra}

    def get(runs: dict, run: str, key: str):
        return runs.get(run, {}).get(key)

    out = []
    for task, name in (("heart", "heart FedProx"), ("cxr", "CXR FedAvg")):
        for key, unit in (("client_avg_accuracy", "accuracy"), ("client_avg_auc", "AUC")):
            out.append(
                row(
                    f"{name}: final client-average {unit} (real processes)",
                    unit,
                    "higher",
                    get(kit, task, key),
                    get(flower, task, key),
                    tolerance=sd,
                )
            )
    for task, label in (("heart", "heart, 15 parameters"), ("heart_1m", "heart MLP, 1.06M parameters")):
        out.append(
            row(
                f"per-round overhead, {label} (round time minus the slowest site's training)",
                "s",
                "lower",
                get(kit, task, "overhead_s"),
                get(flower, task, "overhead_s"),
            )
        )
    for task in ("heart", "cxr"):
        out.append(
            row(
                f"{task}: median round time (real processes)",
                "s",
                "lower",
                get(kit, task, "round_s"),
                get(flower, task, "round_s"),
            )
        )
    out.append(
        row(
            "time to first round: submission to the first training round (heart, running federation)",
            "s",
            "lower",
            get(kit, "heart", "submit_to_first_round_s"),
            get(flower, "heart", "submit_to_first_round_s"),
        )
    )
    for task in ("heart", "cxr"):
        out.append(
            row(
                f"peak memory of server + 4 sites, {task} job (PSS, all their processes)",
                "MB",
                "lower",
                get(kit, task, "peak_mem_mb"),
                get(flower, task, "peak_mem_mb"),
            )
        )
        out.append(
            row(
                f"bytes per site per round on the wire, {task} (TCP payload both ways, median site)",
                "bytes",
                "lower",
                get(kit, task, "wire_bytes_per_site_round"),
                get(flower, task, "wire_bytes_per_site_round"),
            )
        )
    sites = report.get("plan", {}).get("sim_sites")
    for task in ("heart", "cxr"):
        out.append(
            row(
                f"{task}, 4 simulated sites: median round time (kit in-process vs Flower simulation engine)",
                "s",
                "lower",
                get(ksim, task, "round_s"),
                get(fsim, task, "round_s"),
            )
        )
    out.append(
        row(
            f"{sites} simulated heart sites: median round time",
            "s",
            "lower",
            get(ksim, "scale", "round_s"),
            get(fsim, "scale", "round_s"),
        )
    )
    out.append(
        row(
            f"{sites} simulated heart sites: peak memory (PSS, whole process tree)",
            "MB",
            "lower",
            get(ksim, "scale", "process_peak_mem_mb"),
            get(fsim, "scale", "process_peak_mem_mb"),
        )
    )
    for task in ("heart", "cxr"):
        out.append(
            row(
                f"{task}, 4 simulated sites: final client-average accuracy (as the real-process runs)",
                "accuracy",
                "higher",
                get(ksim, task, "client_avg_accuracy"),
                get(fsim, task, "client_avg_accuracy"),
                tolerance=sd,
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_peers.json")
    parser.add_argument("--work", type=Path, default=ROOT / "workspace" / "bench_peers")
    parser.add_argument("--flower-python", type=Path, default=FLOWER_PYTHON)
    parser.add_argument("--quick", action="store_true", help="few rounds and 16 simulated sites: a check")
    parser.add_argument("--skip", nargs="*", default=[], choices=["kit_poc", "flower_deploy", "sims"])
    args = parser.parse_args()
    if not args.flower_python.is_file():
        parser.error(f"no Flower environment at {args.flower_python}: run `make .venv-flower/.installed`")
    plan = dict(QUICK if args.quick else FULL)
    started = time.time()
    shutil.rmtree(args.work, ignore_errors=True)
    work = args.work.resolve()
    work.mkdir(parents=True)
    report: dict = {
        "command": "make bench-peers" if not args.quick else "python scripts/bench_peers.py --quick",
        "hardware": hardware(),
        "plan": plan,
        "load_avg_start": os.getloadavg(),
        "setup": {
            "kit": "FLARE 2.9.0 POC: server + 4 site processes, mutual TLS; in-process simulator",
            "Flower": "1.42.0 deployment engine (SuperLink + 4 SuperNodes, insecure on 127.0.0.1, "
            "subprocess isolation: its default); simulation engine (Ray 2.55.1, 2 CPUs)",
            "jobs": "heart_fedprox (19 rounds), cxr_fedavg (20 rounds) as shipped; heart with a "
            f"{MLP_1M}-unit MLP, {MLP_LOCAL_STEPS} local steps, {plan['mlp_rounds']} rounds",
        },
    }

    def save() -> None:
        report["rows"] = rows_of(report)
        report["seconds"] = time.time() - started
        report["load_avg_end"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))

    rounds = plan["rounds"] or None
    folders = {task: write_sites(task, 4, work / "sites" / task) for task in JOBS}
    mlp_job = simulation_job(
        ROOT / "jobs" / JOBS["heart"],
        work / "jobs" / "heart_1m" / JOBS["heart"],
        n_sites=4,
        rounds=plan["mlp_rounds"],
        hidden=MLP_1M,
        local_steps=MLP_LOCAL_STEPS,
    )
    if "kit_poc" not in args.skip:
        report["kit_poc"] = {}
        for task in JOBS:
            plans = [KitJob(task, ROOT / "jobs" / JOBS[task], rounds=rounds)]
            if task == "heart":
                plans.append(KitJob("heart_1m", mlp_job))
            data = {site: folder / "data" for site, folder in folders[task].items()}
            project = ROOT / "provision" / "poc.yml"
            runs = run_kit_jobs(plans, work / "kit_poc" / task, project=project, data=data)
            for row in runs.values():
                row["wire_bytes_per_site_round"] = _wire_per_round(row["bytes"], row["rounds"])
            report["kit_poc"].update(runs)
            save()
    if "flower_deploy" not in args.skip:
        report["flower_deploy"] = {}
        for name, task, extra in (
            ("heart", "heart", []),
            ("heart_1m", "heart", ["--job-dir", str(mlp_job)]),
            ("cxr", "cxr", []),
        ):
            r = ["--rounds", str(plan["rounds"])] if name != "heart_1m" else []
            row = _runner(
                args.flower_python,
                "flower_deploy",
                ["--task", task, *r, *extra, "--work", str(work / "flower_deploy" / name)],
                work,
                f"flower_deploy_{name}",
                timeout=2400,
            )
            row["wire_bytes_per_site_round"] = _wire_per_round(row.get("wire_bytes", {}), row["rounds"])
            report["flower_deploy"][name] = row
            save()
    if "sims" not in args.skip:
        report["kit_sim"], report["flower_sim"] = {}, {}
        python = Path(sys.executable)
        for name, task, sites, r in (
            ("heart", "heart", 4, plan["rounds"]),
            ("cxr", "cxr", 4, plan["rounds"]),
            ("scale", "heart", plan["sim_sites"], plan["sim_rounds"]),
        ):
            common = ["--task", task, "--sites", str(sites), "--rounds", str(r)]
            for side, py in (("kit_sim", python), ("flower_sim", args.flower_python)):
                report[side][name] = _runner(
                    py, side, [*common, "--work", str(work / side / name)], work, f"{side}_{name}", 2400
                )
                save()
    save()
    print(json.dumps(report["rows"], indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
