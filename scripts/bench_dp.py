"""DP-SGD step time over plain step time, side by side in one run, per Opacus per-sample-gradient engine.

Run as ``python scripts/bench_dp.py --out results/bench_dp.json`` (``make bench-dp``).

Models: the tabular MLP (14 inputs, 16 hidden) and the small CNN (1×28×28, the chest X-ray path),
batch 64, ``torch.set_num_threads(2)``. For each model: the plain step (forward, backward, SGD
step) and a DP-SGD step (per-sample gradients, clipping to C = 1, Gaussian noise, SGD step) with each
Opacus ``grad_sample_mode``: ``hooks`` (module hooks, the default), ``functorch`` (vmap'd
per-sample gradients), ``ew`` (PyTorch expanded weights) and ``ghost`` (ghost clipping, Li et al.
2022 / Bu et al. 2023: per-sample gradient norms without materializing per-sample gradients). The
same fixed batch is used for every variant (sampling is not timed). Each timing is the median of
``REPEATS`` blocks of ``STEPS`` steps after warm-up; the variants alternate within each block so
that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import opacus
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedhealth.models.cnn import SmallCNN
from fedhealth.models.tabular import TabularNet

BATCH, THREADS, STEPS, REPEATS, WARMUP = 64, 2, 10, 5, 3
MODES = ("hooks", "functorch", "ew", "ghost")
AIM_CNN = 2.5


def _models() -> dict[str, tuple]:
    return {
        "tabular_mlp": (lambda: TabularNet(in_features=14, arch="mlp", hidden=16), (14,)),
        "small_cnn": (lambda: SmallCNN(in_channels=1, num_classes=1), (1, 28, 28)),
    }


def _step_fn(make, shape: tuple, mode: str | None):
    """A function doing one training step on a fixed batch: plain (``mode`` None) or DP-SGD."""
    torch.manual_seed(0)
    x = torch.randn(BATCH, *shape)
    y = (torch.rand(BATCH) > 0.5).float()
    model = make()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = nn.BCEWithLogitsLoss()
    if mode is not None:
        loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
        made = PrivacyEngine().make_private(
            module=model,
            optimizer=optimizer,
            criterion=criterion,
            data_loader=loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            poisson_sampling=False,
            grad_sample_mode=mode,
        )
        model, optimizer = made[0], made[1]
        if mode == "ghost":
            criterion = made[2]

    def step() -> None:
        optimizer.zero_grad()
        out = model(x)
        loss = criterion(out, y.view_as(out))
        loss.backward()
        optimizer.step()

    return step


def bench_model(name: str, make, shape: tuple) -> dict:
    variants = {"plain": None, **{f"dp_{m}": m for m in MODES}}
    steps, errors = {}, {}
    for label, mode in variants.items():
        try:
            fn = _step_fn(make, shape, mode)
            for _ in range(WARMUP):
                fn()
            steps[label] = fn
        except Exception as exc:  # an engine that cannot run this model is reported, not fatal
            errors[label] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    times: dict[str, list[float]] = {label: [] for label in steps}
    cpu: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(REPEATS):
        for label, fn in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(STEPS):
                fn()
            times[label].append((time.perf_counter() - start) / STEPS)
            cpu[label].append((time.process_time() - start_cpu) / STEPS)
    median = {label: float(np.median(t)) for label, t in times.items()}
    median_cpu = {label: float(np.median(t)) for label, t in cpu.items()}
    plain, plain_cpu = median["plain"], median_cpu["plain"]
    rows = {
        label: {
            "step_ms": 1000 * t,
            "images_or_rows_per_s": BATCH / t,
            "slowdown_vs_plain": t / plain,
            "cpu_ms_per_step": 1000 * median_cpu[label],
            "cpu_slowdown_vs_plain": median_cpu[label] / plain_cpu,
            "step_ms_all_repeats": [1000 * v for v in times[label]],
        }
        for label, t in median.items()
    }
    dp_rows = {k: v for k, v in rows.items() if k != "plain"}
    best = min(dp_rows, key=lambda k: dp_rows[k]["slowdown_vs_plain"]) if dp_rows else None
    print(f"\n{name} (batch {BATCH}, {THREADS} threads)")
    for label, row in rows.items():
        print(
            f"  {label:14s} {row['step_ms']:8.2f} ms/step  {row['slowdown_vs_plain']:5.2f}x wall  "
            f"{row['cpu_ms_per_step']:8.2f} CPU ms/step  {row['cpu_slowdown_vs_plain']:5.2f}x CPU"
        )
    for label, err in errors.items():
        print(f"  {label:14s} failed: {err}")
    return {"variants": rows, "errors": errors, "best_dp_mode": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_dp.json"))
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    load_before = list(os.getloadavg())
    start = time.time()
    models = {name: bench_model(name, make, shape) for name, (make, shape) in _models().items()}
    cnn = models["small_cnn"]
    best = cnn["best_dp_mode"]
    result = {
        "settings": {
            "batch": BATCH,
            "threads": THREADS,
            "steps": STEPS,
            "repeats": REPEATS,
            "max_grad_norm": 1.0,
        },
        "models": models,
        "aim": {
            "cnn_slowdown_at_most": AIM_CNN,
            "best_cnn_mode": best,
            "best_cnn_slowdown": cnn["variants"][best]["slowdown_vs_plain"] if best else None,
            "met": bool(best and cnn["variants"][best]["slowdown_vs_plain"] <= AIM_CNN),
        },
        "versions": {"torch": torch.__version__, "opacus": opacus.__version__},
        "hardware": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average_1_5_15_min_at_start": load_before,
            "load_average_1_5_15_min_at_end": list(os.getloadavg()),
        },
        "seconds": time.time() - start,
        "note": "wall-clock ratios are side by side (variants interleaved); CPU-time ratios are robust to "
        "other processes on a shared machine (see the load averages)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nwrote {args.out}; CNN best: {best} {result['aim']['best_cnn_slowdown']:.2f}x (aim <= {AIM_CNN}x)"
    )


if __name__ == "__main__":
    main()
