"""What a CPU-only site can do with DenseNet-121: training images/s at 64 px, batch 32, 1 and 2 threads.

The kit's own ``train_images`` (augmentation on, Adam, as the ``cxr_densenet`` job trains) on
synthetic 64 px images, one warm-up step and then ``--steps`` timed steps per thread count. The
machine this ran on is stated in the JSON; on a shared machine the figures are a floor.

    python scripts/bench_densenet_cpu.py --out results/densenet_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import train_images
from fedhealth.models.image_model import ImageModel
from fedhealth.training.loops import LocalTrainConfig

ROOT = Path(__file__).resolve().parents[1]


def measure(threads: int, *, size: int, batch: int, steps: int) -> dict:
    """Images/s of DenseNet-121 training on ``threads`` torch threads (median of the timed steps)."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(batch * steps, 1, size, size)).astype(np.float32)
    y = (np.arange(len(x)) % 2).astype(np.float32)
    model = ImageModel("densenet121", 1, 1)
    spec = LabelSpec("binary")
    cpu = torch.device("cpu")
    warm = LocalTrainConfig(lr=3e-4, batch_size=batch, local_steps=1, optimizer="adam")
    train_images(model, x[:batch], y[:batch], warm, spec, device=cpu)
    per_step = []
    for step in range(steps):
        one = LocalTrainConfig(lr=3e-4, batch_size=batch, local_steps=1, optimizer="adam")
        part = slice(step * batch, (step + 1) * batch)
        start = time.perf_counter()
        train_images(model, x[part], y[part], one, spec, device=cpu, seed=step)
        per_step.append(batch / (time.perf_counter() - start))
    return {
        "threads": threads,
        "images_per_s_median": round(float(np.median(per_step)), 2),
        "images_per_s_min": round(min(per_step), 2),
        "images_per_s_max": round(max(per_step), 2),
        "timed_steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "densenet_cpu.json")
    args = parser.parse_args(argv)
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = [measure(t, size=args.size, batch=args.batch, steps=args.steps) for t in args.threads]
    result = {
        "model": "densenet121 (MONAI, 1 channel, 1 logit, BatchNorm), float32 on CPU",
        "image_size": args.size,
        "batch_size": args.batch,
        "optimizer": "adam, augmentation on (the cxr_densenet job's training)",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.platform()})",
        "torch": torch.__version__,
        "load_average_before_after": [load_before, [round(v, 2) for v in os.getloadavg()]],
        "rows": rows,
        "command": "python scripts/bench_densenet_cpu.py --out results/densenet_cpu.json",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
