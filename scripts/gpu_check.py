"""The GPU check of issue 19: ``pytest -m gpu`` and one DenseNet-121 FedAvg round at 224 px, in-process.

Four sites of synthetic images (a bright-square signal, binary labels; no data set needed) each train
one local epoch from the same global DenseNet-121 with the kit's own ``train_images`` (float16
autocast and loss scaling on CUDA), then the kit's FedAvg ``weighted_average`` makes the next global
model, which every site scores. Writes images/s per site, the round time, the peak GPU memory
(``torch.cuda.max_memory_allocated``), the device name and the gpu tests' outcome.

    python scripts/gpu_check.py                          # on a CUDA machine: make gpu-check
    python scripts/gpu_check.py --device cpu --size 32 --images 16 --out /tmp/gpu_check_cpu.json  # dry run

Exits 2 with a message when ``--device cuda`` and torch sees no CUDA device; 1 when the gpu tests fail.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import evaluate_images, train_images
from fedhealth.models.image_model import ImageModel, load_image_weights
from fedhealth.models.state import to_numpy
from fedhealth.training.aggregation import weighted_average
from fedhealth.training.loops import LocalTrainConfig

ROOT = Path(__file__).resolve().parents[1]
SPEC = LabelSpec("binary")


def site_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noise images with a bright square in the positive half (learnable, no patient data)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.3, size=(n, 1, size, size)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.float32)
    side = max(2, size // 4)
    x[y > 0, 0, size // 4 : size // 4 + side, size // 4 : size // 4 + side] += 0.6
    return x, y


def run_gpu_tests() -> dict:
    """``pytest -m gpu`` over the unit tests; its exit code and closing line."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/unit"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return {"returncode": proc.returncode, "summary": lines[-1] if lines else proc.stderr[-500:]}


def fedavg_round(args: argparse.Namespace, device: torch.device) -> dict:
    """One FedAvg round over ``args.sites`` synthetic sites; timings and peak memory."""
    global_model = ImageModel("densenet121", 1, 1)
    weights = to_numpy(global_model)
    config = LocalTrainConfig(lr=3e-4, batch_size=args.batch, local_epochs=1, optimizer="adam")
    data = [site_images(args.images, args.size, seed) for seed in range(args.sites)]
    # warm-up (cuDNN autotuning, the allocator): one step, not timed
    train_images(
        ImageModel("densenet121", 1, 1),
        *data[0],
        LocalTrainConfig(lr=3e-4, batch_size=args.batch, local_steps=1, optimizer="adam"),
        SPEC,
        device=device,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    updates, sites = [], []
    for i, (x, y) in enumerate(data):
        model = load_image_weights(ImageModel("densenet121", 1, 1), weights)
        stats = train_images(model, x, y, config, SPEC, device=device, seed=i)
        updates.append(to_numpy(model))
        sites.append(
            {"site": f"site-{i + 1}", "images": len(y), "images_per_s": round(stats["images_per_s"], 1)}
        )
    new_global = load_image_weights(
        ImageModel("densenet121", 1, 1), weighted_average(updates, [args.images] * args.sites)
    )
    for site, (x, y) in zip(sites, data, strict=True):
        site["auc"] = round(float(evaluate_images(new_global, x, y, SPEC, device)["auc"]), 4)
    if device.type == "cuda":
        torch.cuda.synchronize()
    round_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"sites": sites, "round_s": round(round_s, 2), "peak_gpu_memory_gib": peak and round(peak, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the script"
    )
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--images", type=int, default=256, help="training images per site (default 256)")
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--skip-tests", action="store_true", help="do not run pytest -m gpu")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check.json")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device is visible to torch (torch.cuda.is_available() is False, "
            f"torch {torch.__version__}, CUDA build {torch.version.cuda}); run it on a GPU machine, "
            "or --device cpu for a dry run.",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    tests = None if args.skip_tests else run_gpu_tests()
    result = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "model": "densenet121 (MONAI, 1 channel, 1 logit, BatchNorm)",
        "mixed_precision": device.type == "cuda",
        "image_size": args.size,
        "batch_size": args.batch,
        "gpu_tests": tests,
        **fedavg_round(args, device),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 1 if tests is not None and tests["returncode"] != 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
