"""SecAgg+ benchmark: round time, bytes per site and exactness against plain FedAvg, HE and Flower's SecAgg+.

All in one run, one configuration after another on the same machine (run it with nothing else
running). For each vector size (15, 100k, 1M float32 parameters), site count (4, 16) and dropout
(0, or 1 site that received the shares but never sends its masked update):

- ``plain``: every site's update serialized with FLARE's FOBS (what FLARE puts on the wire) and
  FLARE's own weighted aggregator (:func:`fedhealth_tools.he.pipeline.clear_fedavg`).
- ``secagg``: the kit's SecAgg+ (:mod:`fedhealth.secagg`) among in-process sites with certificates
  from a throw-away root CA, every message through FOBS (:mod:`fedhealth_tools.secagg.simulate`);
  the row is a steady-state round (keys of the epoch already agreed; ``setup_s`` is the key epoch's
  start, paid at round 0 and after a dropout); ``bits`` 40 (the jobs' setting) and, at 100k, 32 and 64.
- ``he``: FLARE's CKKS components (encrypt at each site, aggregate, decrypt) with the TenSEAL
  contexts of a provisioned kit (:func:`fedhealth_tools.he.pipeline.he_fedavg_round`); HE has no
  dropout handling to measure (a missing site is simply not summed).
- ``flower_secaggplus``: Flower 1.42's own SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``),
  in its own virtual environment (``scripts/bench_secagg_flower.py``).

The sites run one after another in one process: ``round_s`` is the sum of every site's and the
server's work in the round (no network). ``bytes_per_site``: what a site sends and receives in the
round (FOBS sizes; Flower's: its own serialized messages, see its script). ``max_rel_error``:
``max |mean - exact| / max |exact|`` against the float64 weighted mean of the sites that were summed.

Usage: ``make bench-secagg`` (writes ``results/bench_secagg.json``); ``--quick`` for 15 and 100k at 4 sites.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from nvflare.apis.dxo import DXO, DataKind

from fedhealth.filters.wire import serialized_size
from fedhealth.reports.run_report import find_run_files
from fedhealth.secagg.config import SecAggConfig
from fedhealth_tools.he.pipeline import clear_fedavg, he_fedavg_round
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.demo import run_on
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.variants import heart_poc, job_variant
from fedhealth_tools.secagg.simulate import InProcessSecAgg

ROOT = Path(__file__).resolve().parents[1]
FLOWER_PY = ROOT / ".venv-flower" / "bin" / "python"


def _updates(d: int, n: int, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    ups = {
        f"site-{i + 1}": {
            "w": rng.normal(0, 0.01, size=(d - 1,)).astype(np.float32),
            "b": rng.normal(0, 0.01, size=(1,)).astype(np.float32),
        }
        for i in range(n)
    }
    weights = {s: 100.0 * (i + 1) for i, s in enumerate(ups)}
    return ups, weights


def _exact(ups: dict, weights: dict, keep: list[str]) -> np.ndarray:
    total = sum(weights[s] for s in keep)
    return (
        sum(weights[s] * np.concatenate([ups[s]["b"], ups[s]["w"]]).astype(np.float64) for s in keep) / total
    )


def _rel(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(got - exact)) / np.max(np.abs(exact)))


def plain_row(d: int, n: int, repeats: int) -> dict:
    ups, weights = _updates(d, n)
    times, err = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        result, _ = clear_fedavg({s: (u, weights[s]) for s, u in ups.items()})
        times.append(time.perf_counter() - start)
        got = np.concatenate([np.asarray(result["b"], np.float64), np.asarray(result["w"], np.float64)])
        err = _rel(got, _exact(ups, weights, list(ups)))
    sent = statistics.mean(
        serialized_size(DXO(DataKind.WEIGHTS, data=u).to_shareable()) for u in ups.values()
    )
    received = serialized_size(
        DXO(DataKind.WEIGHTS, data=dict(result)).to_shareable()
    )  # the new global model
    return {
        "runner": "inprocess",
        "mode": "plain",
        "params": d,
        "sites": n,
        "dropouts": 0,
        "round_s": statistics.median(times),
        "bytes_per_site": sent + received,
        "max_rel_error": err,
        "repeats": repeats,
        "note": "update sent + global model received (FOBS); FLARE's InTimeAccumulateWeightedAggregator",
    }


def secagg_row(d: int, n: int, dropouts: int, repeats: int, *, bits: int = 40) -> dict:
    ups, weights = _updates(d, n)
    neighbors = None if n <= 4 else 4
    norm = max(
        float(np.sqrt(sum(np.sum(np.square(v.astype(np.float64))) for v in u.values()))) for u in ups.values()
    )
    config = SecAggConfig(
        max_norm=round(2 * norm, 3), bits=bits, max_sites=n, max_weight=100.0 * n, neighbors=neighbors
    )
    fed = InProcessSecAgg(sorted(ups), config)
    # the train task's global model (float32, as in plain FedAvg); the runner counts the protocol's bytes
    model_bytes = serialized_size(DXO(DataKind.WEIGHTS, data=next(iter(ups.values()))).to_shareable())
    first = fed.run_round(0, ups, weights)  # the key epoch's start
    times, sizes, err, rnd = [], [], 0.0, 1
    dropped = sorted(ups)[:dropouts]
    for _ in range(repeats):
        if fed.server.needs_setup:  # after a dropout: a new epoch, then the measured round
            fed.run_round(rnd, ups, weights)
            rnd += 1
        result = fed.run_round(rnd, ups, weights, drop_after_sharing=dropped)
        rnd += 1
        times.append(result.seconds)
        sizes.append(result.bytes_per_site)
        err = _rel(result.mean, _exact(ups, weights, result.survivors))  # layers sorted: [b, w]
    return {
        "runner": "inprocess",
        "mode": "secagg",
        "params": d,
        "sites": n,
        "dropouts": dropouts,
        "round_s": statistics.median(times),
        "bytes_per_site": statistics.mean(sizes) + model_bytes,
        "protocol_bytes_per_site": statistics.mean(sizes),
        "max_rel_error": err,
        "repeats": repeats,
        "setup_s": first.seconds,
        "setup_bytes_per_site": first.bytes_per_site + model_bytes,
        "bits": bits,
        "neighbors": config.degree(n),
        "threshold": config.threshold_for(n),
        "max_norm": config.max_norm,
    }


def he_row(d: int, n: int, kits: Path, repeats: int) -> dict:
    ups, weights = _updates(d, n)
    initial = {k: np.zeros_like(v) for k, v in next(iter(ups.values())).items()}
    times, sizes, err = [], [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        he = he_fedavg_round(
            site_kit=kits / "cleveland" / "startup",
            server_kit=kits / "server" / "startup",
            updates={s: (u, weights[s]) for s, u in ups.items()},
            initial=initial,
        )
        times.append(time.perf_counter() - start)
        sizes.append(statistics.mean(he.bytes_sent.values()) + serialized_size(he.global_model))
        got = np.concatenate(
            [np.asarray(he.result["b"], np.float64).ravel(), np.asarray(he.result["w"], np.float64).ravel()]
        )
        err = _rel(got, _exact(ups, weights, list(ups)))
    return {
        "runner": "inprocess",
        "mode": "he",
        "params": d,
        "sites": n,
        "dropouts": 0,
        "round_s": statistics.median(times),
        "bytes_per_site": statistics.mean(sizes),
        "max_rel_error": err,
        "repeats": repeats,
        "note": "encrypted update sent + encrypted global model received (both FOBS); one site decrypts",
    }


POC_JOBS = {"plain": "heart_fedavg", "secagg": "heart_secagg", "he": "heart_he"}
# hidden width of the heart MLP (28 aligned features): None = the job's logistic regression (29 params)
POC_SIZES = {29: None, 99_991: 3_333, 999_991: 33_333}


def _model(job: Path, hidden: int | None) -> Path:
    server = job / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    for component in config["components"]:
        if component["id"] == "persistor" and hidden is not None:
            component["args"]["model_args"].update(arch="mlp", hidden=hidden)
    server.write_text(json.dumps(config, indent=2))
    return job


def poc_rows(work: Path, layout, rounds: int, sizes: dict[int, int | None]) -> list[dict]:
    """The three heart jobs at each model size on one POC federation (4 sites, HE kits), one after another.

    ``round_s``: the median of rounds 1.. (round 0 starts the job's processes) from the server's run
    record (ROUND_STARTED to ROUND_DONE, the same events for every workflow).
    """
    rows = []
    with PocProcesses(layout, work / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            for d, hidden in sizes.items():
                for mode, name in POC_JOBS.items():
                    job = _model(
                        job_variant(ROOT / "jobs" / name, work / "jobs" / f"{name}_{d}", rounds=rounds),
                        hidden,
                    )
                    result = run_on(
                        admin, layout, job, workspace=work / "ws", timeout=1800, check=procs.check_alive
                    )
                    record, _ = find_run_files(result)
                    times = [
                        t["done"] - t["started"]
                        for t in record["round_times"]
                        if t.get("done") and t["round"]
                    ]
                    rows.append(
                        {
                            "mode": mode,
                            "runner": "poc",
                            "params": d,
                            "sites": len(layout.sites),
                            "dropouts": 0,
                            "round_s": statistics.median(times),
                            "round_times_s": times,
                            "job": name,
                            "bytes_per_site": None,
                            "max_rel_error": None,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def flower_rows(params: list[int], sites: list[int], dropouts: list[int], work: Path) -> list[dict]:
    if not FLOWER_PY.exists():
        print(f"no Flower environment at {FLOWER_PY.parent.parent} (make .venv-flower/.installed): skipped")
        return []
    rows = []
    for n in sites:
        shares = (
            ["--num-shares", str(n), "--threshold", str(n // 2 + 1)]
            if n <= 4
            else ["--num-shares", "5", "--threshold", "3"]
        )
        out = work / f"flower_{n}.json"
        cmd = [
            str(FLOWER_PY),
            str(ROOT / "scripts" / "bench_secagg_flower.py"),
            "--params",
            *map(str, params),
            "--sites",
            str(n),
            "--dropouts",
            *map(str, dropouts),
            "--out",
            str(out),
            *shares,
        ]
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        rows += [{"runner": "inprocess", **r} for r in json.loads(out.read_text())["rows"]]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_secagg.json")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-poc", action="store_true", help="the in-process rows and Flower's only")
    parser.add_argument("--poc-rounds", type=int, default=12, help="rounds per POC job (round 0 is left out)")
    args = parser.parse_args()
    params = [15, 100_000] if args.quick else [15, 100_000, 1_000_000]
    sites = [4] if args.quick else [4, 16]
    rows: list[dict] = []
    started = time.time()
    with tempfile.TemporaryDirectory(
        dir=ROOT / "workspace" if (ROOT / "workspace").is_dir() else None
    ) as tmp:
        work = Path(tmp)
        layout = heart_poc(ROOT / "provision" / "poc.yml", work / "ws", he=True)
        kits = layout.kit("server").parent
        if not args.no_poc:
            sizes = {d: h for d, h in POC_SIZES.items() if args.quick is False or d < 1_000_000}
            rows += poc_rows(work, layout, args.poc_rounds, sizes)
        for d in params:
            for n in sites:
                reps = 1 if d * n >= 16_000_000 else args.repeats
                rows.append(plain_row(d, n, reps))
                rows.append(he_row(d, n, kits, reps))
                for k in (0, 1):
                    rows.append(secagg_row(d, n, k, reps))
                if d == 100_000:  # the ring's width: bytes against rounding
                    rows += [secagg_row(d, n, 0, reps, bits=b) for b in (32, 64)]
                print(json.dumps(rows[-1]), flush=True)
        rows += flower_rows(params, sites, [0, 1], work)
    out = {
        "rows": rows,
        "command": "make bench-secagg" + (" (--quick)" if args.quick else ""),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "date": datetime.now().isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
