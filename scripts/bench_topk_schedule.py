"""Which top-k schedule closes top-k 1 % + error feedback's AUC gap: chosen on validation AUC only.

The compression benchmark's chest X-ray setting (``scripts/bench_compression.py``: PneumoniaMNIST, 4
sites, Dirichlet(1.0), the small CNN, FedAvg with Adam 1e-3, one local epoch, 40 rounds), at several
seeds (each seed is its own split, initial model and shuffling, the same for every mode). Each
candidate schedule (dense warm-up rounds, a k that decays from 10 % to 1 %) runs beside the dense
baseline and plain top-k 1 % + EF; the final models are scored on PneumoniaMNIST's validation split
and its test split.

The choice, on validation AUC only: the schedule with the highest mean validation AUC among those
that send at most ``MAX_BYTES_VS_DENSE`` of dense's bytes in all (so that the round-time aim, at least
3x faster than dense, stays within reach with the warm-up's dense rounds counted). Test AUC is
reported beside it and plays no part. PneumoniaMNIST's validation split is close to its ceiling (the
dense model's validation AUC is about 0.99 against about 0.93 on test), so its gaps are smaller
than the test gaps: a threshold on the validation gap would not stand for the issue's test aim, and
the rule compares the candidates with one another instead.

Usage: ``make bench-topk-schedule`` (writes ``results/bench_topk_schedule.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compression import MODES, load, load_val, run_cxr  # noqa: E402

EPOCHS, ROUNDS = 1, 40
BASELINES = ["none", "topk_1pct_ef"]
CANDIDATES = [
    "topk_1pct_ef_warm1",
    "topk_1pct_ef_warm2",
    "topk_1pct_ef_warm3",
    "topk_10to1pct_ef_10r",
    "topk_10to1pct_ef_20r",
    "topk_1pct_ef_warm2_10to1pct_10r",
]
MAX_BYTES_VS_DENSE = 0.1  # at least 10x fewer bytes than dense over the whole job


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per mode: mean AUC gaps to dense (points; validation and test), bytes, and the per-seed figures."""
    dense = runs["none"]
    out = {}
    for mode, rows in runs.items():
        val_gap = [100 * (r["val_auc"] - d["val_auc"]) for r, d in zip(rows, dense, strict=True)]
        test_gap = [100 * (r["auc"] - d["auc"]) for r, d in zip(rows, dense, strict=True)]
        sent = sum(r["bytes_sent"] for r in rows)
        out[mode] = {
            "settings": MODES[mode],
            "val_auc_mean": float(np.mean([r["val_auc"] for r in rows])),
            "test_auc_mean": float(np.mean([r["auc"] for r in rows])),
            "val_gap_pts": float(np.mean(val_gap)),
            "val_gap_pts_per_seed": val_gap,
            "test_gap_pts": float(np.mean(test_gap)),
            "test_gap_pts_per_seed": test_gap,
            "bytes_sent": sent,
            "bytes_vs_dense": sent / sum(d["bytes_sent"] for d in dense),
            "fewer_bytes_than_raw": sum(r["bytes_raw"] for r in rows) / sent,
            "bytes_per_round_per_site": float(np.mean([r["bytes_per_round_per_site"] for r in rows])),
        }
    return out


def choose(summary: dict[str, dict]) -> str:
    """The rule in the module docstring, on validation figures only."""
    cheap = [m for m in CANDIDATES if summary[m]["bytes_vs_dense"] <= MAX_BYTES_VS_DENSE]
    if not cheap:
        raise ValueError(f"no candidate sends at most {MAX_BYTES_VS_DENSE} of dense's bytes.")
    return max(cheap, key=lambda m: (summary[m]["val_auc_mean"], -summary[m]["bytes_sent"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/bench_topk_schedule.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    val = load_val()
    runs: dict[str, list[dict]] = {m: [] for m in BASELINES + CANDIDATES}
    for seed in args.seeds:
        sites, test = load(seed)
        for mode in runs:
            row = run_cxr(mode, EPOCHS, ROUNDS, sites, test, seed, val=val)
            runs[mode].append({"seed": seed, **row})
            print(
                f"seed {seed} {mode:32s} val {row['val_auc']:.4f} test {row['auc']:.4f} "
                f"sent {row['bytes_sent']:>10,} ({row['wall_s']:.0f} s)",
                flush=True,
            )
    summary = summarize(runs)
    chosen = choose(summary)
    result = {
        "benchmark": "topk_schedule",
        "hardware": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.is_available(),
        },
        "task": f"PneumoniaMNIST 28x28, bench_compression's CXR setting, E={EPOCHS}, {ROUNDS} rounds",
        "seeds": args.seeds,
        "rule": f"highest mean validation AUC among schedules sending <= {MAX_BYTES_VS_DENSE} of dense's "
        "bytes (test AUC not used)",
        "chosen": chosen,
        "summary": summary,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for mode, s in summary.items():
        print(
            f"{mode:32s} val gap {s['val_gap_pts']:+.2f} test gap {s['test_gap_pts']:+.2f} pts  "
            f"bytes vs dense {s['bytes_vs_dense']:.4f} (x{1 / s['bytes_vs_dense']:.1f} fewer)"
        )
    print(f"chosen on validation: {chosen}")


if __name__ == "__main__":
    main()
