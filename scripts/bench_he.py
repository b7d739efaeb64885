"""HE benchmark: the heart job with and without CKKS encryption in one POC run, and cost vs model size.

Part 1 (POC, real FLARE processes, one provisioning with TenSEAL contexts): ``jobs/heart_he`` and
its clear twin (the same job with the HE filters, generator, aggregator and persistor filter
swapped for FLARE's clear ones; same data, seeds, executor and rounds) run one after the other on
the same kits. Per round wall time comes from the server's ScatterAndGather log (round 0, which
starts the job processes, is left out); bytes per site per round are what the server measured on
arrival (``HEUpdateMeter`` runs in both jobs); encryption and decryption time at the sites from
FLARE's HE filters' own log lines; final metrics from the run report.

Part 2 (components, one process): FLARE's HE encryptor, aggregator and decryptor
(:mod:`fedhealth_tools.he.pipeline`) on four sites' updates of 1k, 100k and 1M parameters, against
FLARE's clear aggregator; plus selective encryption (a quarter of the layers) at 1M.

Usage: ``make bench-he`` (writes ``results/bench_he.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from fedhealth import constants as C
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.he.pipeline import clear_fedavg, he_fedavg_round
from fedhealth_tools.poc.demo import run_job
from fedhealth_tools.poc.variants import heart_poc, job_variant

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = {"cleveland": 199, "hungary": 172, "switzerland": 30, "va_long_beach": 85}
SIZES = (1_000, 100_000, 1_000_000)
N_LAYERS = 4
SELECTIVE_LAYERS = ["net.weight"]  # the lever on the heart model: the bias (1 value) in clear
ROUND_LINE = re.compile(r"^(\S+ \S+) - ScatterAndGather .* Round (\d+) (started|finished)\.", re.M)
HE_TIME = re.compile(
    r"(Encryption|Decryption) time for \d+ of \d+ params.*?(\d+\.\d+(?:e-?\d+)?) seconds", re.M
)


def _edit(path: Path, change) -> None:
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config, indent=2))


def _encrypt_only(layers: list[str]):
    def change(config: dict) -> None:
        for group in config["task_result_filters"]:
            for f in group["filters"]:
                if f["path"].endswith("HEModelEncryptor"):
                    f["args"]["encrypt_layers"] = list(layers)

    return change


def clear_twin(he_job: Path, dest: Path) -> Path:
    """``he_job`` with FLARE's clear components in place of the HE ones (the meter stays)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(he_job, dest)
    config = dest / "app" / "config"

    def client(c: dict) -> None:
        c["task_data_filters"], c["task_result_filters"], c["components"] = [], [], []

    def server(c: dict) -> None:
        comps = {x["id"]: x for x in c["components"]}
        comps["persistor"]["args"].pop("filter_id")
        comps["shareable_generator"].update(
            path="fedhealth.shareables.scheduled_generator.ScheduledShareableGenerator",
            args={k: comps["shareable_generator"]["args"][k] for k in ("lr", "gamma")},
        )
        comps["aggregator"].update(
            path="nvflare.app_common.aggregators.intime_accumulate_model_aggregator."
            "InTimeAccumulateWeightedAggregator",
            args={"expected_data_kind": "WEIGHTS"},
        )
        c["components"] = [
            x for x in c["components"] if x["id"] not in ("serialize_filter", "he_context_check")
        ]
        c["workflows"][-1]["path"] = "nvflare.app_common.workflows.global_model_eval.GlobalModelEval"

    _edit(config / "config_fed_client.json", client)
    _edit(config / "config_fed_server.json", server)
    _edit(dest / "meta.json", lambda m: m.update(name=dest.name))
    return dest


def round_times(result: Path) -> list[float]:
    """Seconds per round (rounds 1..), from the server log in the downloaded job result."""
    text = "\n".join(p.read_text() for p in result.rglob("log.txt"))
    stamps: dict[int, dict[str, datetime]] = {}
    for stamp, rnd, what in ROUND_LINE.findall(text):
        stamps.setdefault(int(rnd), {})[what] = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
    return [
        (s["finished"] - s["started"]).total_seconds()
        for r, s in sorted(stamps.items())
        if r > 0 and {"started", "finished"} <= set(s)
    ]


def site_he_times(layout, job_id: str) -> dict[str, float]:
    """Mean encryption and decryption seconds per message at the sites (FLARE's HE filter logs)."""
    found: dict[str, list[float]] = {"Encryption": [], "Decryption": []}
    for site in layout.sites:
        for log in (layout.kit(site) / job_id).rglob("log.txt"):
            for kind, seconds in HE_TIME.findall(log.read_text()):
                found[kind].append(float(seconds))
    return {f"{k.lower()}_s": statistics.mean(v) if v else None for k, v in found.items()}


def poc_side_by_side(rounds: int, work: Path) -> dict:
    layout = heart_poc(ROOT / "provision" / "poc.yml", work / "ws", he=True)
    he_job = job_variant(ROOT / "jobs" / "heart_he", work / "jobs" / "heart_he", rounds=rounds)
    selective = job_variant(he_job, work / "jobs" / "heart_he_weight_only")
    _edit(selective / "app" / "config" / "config_fed_client.json", _encrypt_only(SELECTIVE_LAYERS))
    jobs = {
        "plain": clear_twin(he_job, work / "jobs" / "heart_plain"),
        "he": he_job,
        "he_selective": selective,
    }
    out = {}
    for name, job in jobs.items():
        start = time.monotonic()
        result = run_job(layout, job, workspace=work / "ws", timeout=900)
        seconds = time.monotonic() - start
        record, cross = find_run_files(result)
        report = build_report(job.name, record, cross)
        facts = [m[C.M_HE] for r in record["rounds"] for m in r["sites"].values() if C.M_HE in m]
        times = round_times(result)
        out[name] = {
            "job_seconds": seconds,
            "round_times_s": times,
            "round_time_s": statistics.median(times),
            "bytes_per_site_per_round": statistics.mean(f[C.M_HE_BYTES_SENT] for f in facts),
            "bytes_per_site_per_round_clear_equivalent": statistics.mean(
                f[C.M_HE_BYTES_PLAIN] for f in facts
            ),
            "encrypted_layers": sorted({x for f in facts for x in f["encrypted_layers"]}),
            "global_accuracy": report["global"]["accuracy"],
            "global_auc": report["global"]["auc"],
            "clear_layers": sorted({x for f in facts for x in f["clear_layers"]}),
            **(site_he_times(layout, report["job_id"]) if name != "plain" else {}),
        }
    return out


def _updates(n: int, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    initial = {f"layer{i}": rng.normal(0, 0.1, n // N_LAYERS).astype(np.float32) for i in range(N_LAYERS)}
    updates = {
        site: ({k: v + rng.normal(0, 0.01, v.shape).astype(np.float32) for k, v in initial.items()}, m)
        for site, m in N_TRAIN.items()
    }
    return initial, updates


def _max_error(result: dict, reference: dict) -> float:
    return max(float(np.max(np.abs(np.asarray(result[k], np.float64) - reference[k]))) for k in reference)


def size_sweep(kits: Path, repeats: int) -> list[dict]:
    """Encrypt, aggregate, decrypt at each size (4 sites), all layers and, at 1M, a quarter of them.

    Each case runs ``repeats`` times; times are the median (the machine is shared).
    """
    cases = [(n, None) for n in SIZES] + [(SIZES[-1], ["layer0"])]
    rows = []
    for n, layers in cases:
        initial, updates = _updates(n)
        total = sum(m for _, m in updates.values())
        reference = {
            k: sum(w[k].astype(np.float64) * m for w, m in updates.values()) / total for k in initial
        }
        runs = []
        for _ in range(repeats):
            clear, clear_s = clear_fedavg(updates)
            he = he_fedavg_round(
                site_kit=kits / "cleveland" / "startup",
                server_kit=kits / "server" / "startup",
                updates=updates,
                initial=initial,
                encrypt_layers=layers,
            )
            runs.append(
                {
                    "encrypt_s_per_site": statistics.mean(he.encrypt_s.values()),
                    "aggregate_s_server": he.aggregate_s,
                    "aggregate_s_server_clear": clear_s,
                    "decrypt_s_site": he.decrypt_s,
                    "max_abs_error_vs_clear": _max_error(he.result, clear),
                    "max_abs_error_vs_float64": _max_error(he.result, reference),
                }
            )
            sizes = {
                "bytes_per_site": statistics.mean(he.bytes_sent.values()),
                "bytes_per_site_clear": statistics.mean(he.bytes_plain.values()),
                "bytes_per_site_ciphertexts_only": statistics.mean(he.bytes_ciphertexts.values()),
            }
            del he, clear
        row = {
            "parameters": n,
            "encrypted_fraction": 1.0 if layers is None else len(layers) / N_LAYERS,
            **{k: statistics.median(r[k] for r in runs) for k in runs[0]},
            "max_abs_error_vs_clear": max(r["max_abs_error_vs_clear"] for r in runs),
            "max_abs_error_vs_float64": max(r["max_abs_error_vs_float64"] for r in runs),
            **sizes,
            "bytes_ratio": sizes["bytes_per_site"] / sizes["bytes_per_site_clear"],
            "repeats": repeats,
        }
        rows.append(row)
        print(json.dumps(row))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_he.json")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="size-sweep repeats per case")
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fedhealth_bench_he_") as tmp:
        work = Path(tmp)
        poc = poc_side_by_side(args.rounds, work)
        kits = work / "ws" / "poc" / "fedhealth_poc" / "prod_00"
        sweep = size_sweep(kits, args.repeats)
    plain, he, sel = poc["plain"], poc["he"], poc["he_selective"]
    record = {
        "round_time_ratio": he["round_time_s"] / plain["round_time_s"],
        "bytes_ratio": he["bytes_per_site_per_round"] / plain["bytes_per_site_per_round"],
        "round_time_ratio_selective": sel["round_time_s"] / plain["round_time_s"],
        "bytes_ratio_selective": sel["bytes_per_site_per_round"] / plain["bytes_per_site_per_round"],
        "round_time": "median seconds per round over rounds 1.. (server ScatterAndGather log)",
        "metric_plain": plain["global_auc"],
        "metric_he": he["global_auc"],
        "metric": "global AUC (test-size-weighted mean of the 4 sites' AUC of the final global model)",
        "poc": poc,
        "size_sweep": sweep,
        "rounds": args.rounds,
        "hardware": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "processor": platform.processor(),
        },
        "seconds": time.monotonic() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k not in ("poc", "size_sweep")}, indent=2))


if __name__ == "__main__":
    main()
