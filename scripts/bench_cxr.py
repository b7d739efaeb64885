"""Chest X-ray benchmark: PneumoniaMNIST as DICOM in 4 non-IID sites; centralized, local, FedAvg, FedProx.

Run as ``python scripts/bench_cxr.py --out results/bench_cxr.json`` (``make bench-cxr``).

1. The converter writes PneumoniaMNIST (MedMNIST v2, 28×28) as real DICOM files into four sites:
   Dirichlet(α) label skew and a simulated scanner per site (gain, offset, gamma, rescale,
   MONOCHROME1 at two sites).
2. Every site's folder is read through the site pipeline twice: cold (decode, window, invert,
   resize; empty cache) and cached (SHA-256 hits), timing images per second.
3. The seed's small CNN is trained four ways, all in this one run, with the same optimizer (Adam),
   batch size and augmentation: centralized on the pooled training images, local-only at each
   site, FedAvg and FedProx (the in-process twin of ``jobs/cxr_fedavg`` / ``jobs/cxr_fedprox``).
   Each keeps the epoch or round with the best AUC on validation images (the pooled validation
   split; a local-only model its own site's); test images are read only for the final figures.
4. Test AUC and accuracy on the pooled test split and on each site's test split; the ratio
   federated AUC / centralized AUC.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "custom"))

from fedhealth.imaging.labels import LabelSpec  # noqa: E402
from fedhealth.imaging.loops import evaluate_images  # noqa: E402
from fedhealth.imaging.site import PipelineSettings, load_site_images  # noqa: E402
from fedhealth.models.image_model import ImageModel  # noqa: E402
from fedhealth.tasks.imaging import ImageSite  # noqa: E402
from fedhealth.training.loops import LocalTrainConfig  # noqa: E402
from fedhealth_tools.imaging.converter import convert_medmnist, how_to_get, medmnist_file  # noqa: E402
from fedhealth_tools.imaging.federation import fit_on_one, pooled, run_image_federation  # noqa: E402

SITES = ("site_a", "site_b", "site_c", "site_d")
SPEC = LabelSpec("binary")


def _decode_throughput(root: Path, cache: Path, intensity: str, size: int) -> tuple[dict, dict]:
    """Load every site cold (empty cache) then cached; returns the splits and images/s of both passes."""
    timings, splits = {}, {}
    for label in ("cold", "cached"):
        n, seconds = 0, 0.0
        for site in SITES:
            start = time.perf_counter()
            settings = PipelineSettings(size=size, intensity=intensity)
            splits[site] = load_site_images(root / site, SPEC, settings, cache_root=cache / site)
            seconds += time.perf_counter() - start
            n += sum(len(s) for s in splits[site].values())
        timings[label] = {"images": n, "seconds": seconds, "images_per_s": n / seconds}
    return splits, timings


def _scores(model, splits: dict) -> dict:
    x = np.concatenate([splits[s]["test"].x for s in SITES])
    y = np.concatenate([splits[s]["test"].y for s in SITES])
    whole = evaluate_images(model, x, y, SPEC)
    per_site = {}
    for s in SITES:
        m = evaluate_images(model, splits[s]["test"].x, splits[s]["test"].y, SPEC)
        per_site[s] = {"auc": _num(m["auc"]), "accuracy": m["accuracy"], "n_test": len(splits[s]["test"])}
    return {
        "auc": whole["auc"],
        "accuracy": whole["accuracy"],
        "loss": whole["loss"],
        "per_site": per_site,
    }


def _num(x: float) -> float | None:
    return None if x != x else float(x)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_cxr.json"))
    parser.add_argument("--npz", type=Path, default=medmnist_file("pneumoniamnist"))
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20, help="centralized and local-only epochs")
    parser.add_argument("--rounds", type=int, default=20, help="federated rounds (one local epoch each)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mu", type=float, default=0.01, help="FedProx proximal weight")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--intensity", default="zscore", help="per-image intensity: zscore or none")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--methods", nargs="+", default=["centralized", "local", "fedavg", "fedprox"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription)")
    args = parser.parse_args()
    if not args.npz.is_file():
        print(f"bench-cxr: {args.npz} not found. {how_to_get(args.npz.stem)}.", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    size = 32 if args.model == "densenet121" else 28  # MONAI's DenseNet-121 needs at least 32×32
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench_cxr_"))
    try:
        manifest = convert_medmnist(
            args.npz, work / "sites", sites=list(SITES), alpha=args.alpha, seed=args.seed
        )
        splits, decode = _decode_throughput(work / "sites", work / "cache", args.intensity, size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cold, cached = decode["cold"]["images_per_s"], decode["cached"]["images_per_s"]
    print(f"decode: cold {cold:.0f} images/s, cached {cached:.0f} images/s")
    augment = not args.no_augment
    sites = [ImageSite(s, splits[s], SPEC, augment=augment) for s in SITES]
    pooled_site = ImageSite.from_arrays(
        "pooled", {k: pooled(sites, k) for k in ("train", "val", "test")}, SPEC, augment=augment
    )

    def make_model() -> torch.nn.Module:
        return ImageModel(args.model, 1, 1, seed=args.seed)

    config = LocalTrainConfig(lr=args.lr, batch_size=args.batch_size, optimizer="adam")
    methods: dict = {}
    for method in args.methods:
        t0 = time.perf_counter()
        if method == "centralized":
            fit = fit_on_one(make_model, pooled_site, config, epochs=args.epochs, seed=args.seed)
            methods[method] = {
                **_scores(fit.model, splits),
                "best_epoch": fit.best_round,
                "train_images_per_s": fit.images_per_s,
            }
        elif method == "local":
            per_site, speeds = {}, []
            for site in sites:
                s = site.name
                fit = fit_on_one(make_model, site, config, epochs=args.epochs, seed=args.seed)
                scores = _scores(fit.model, splits)
                per_site[s] = {
                    **scores["per_site"][s],
                    "pooled_test_auc": scores["auc"],
                    "best_epoch": fit.best_round,
                }
                speeds.append(fit.images_per_s)
            aucs = [v["auc"] for v in per_site.values() if v["auc"] is not None]
            methods[method] = {
                "auc": float(np.mean([v["pooled_test_auc"] for v in per_site.values()])),
                "own_site_auc_mean": float(np.mean(aucs)),
                "accuracy": float(np.mean([v["accuracy"] for v in per_site.values()])),
                "per_site": per_site,
                "train_images_per_s": float(np.median(speeds)),
                "note": "auc: mean pooled-test AUC of the local models; per_site: own site's test",
            }
        elif method in ("fedavg", "fedprox"):
            mu = 0.0 if method == "fedavg" else args.mu
            cfg = LocalTrainConfig(**{**config.__dict__, "mu": mu})
            fit = run_image_federation(make_model, sites, cfg, rounds=args.rounds, seed=args.seed)
            methods[method] = {
                **_scores(fit.model, splits),
                "best_round": fit.best_round,
                "mu": mu,
                "train_images_per_s": fit.images_per_s,
                "history": fit.history,
            }
        else:
            raise SystemExit(f"unknown method {method!r}")
        methods[method]["seconds"] = time.perf_counter() - t0
        print(
            f"{method:12s} test AUC {methods[method]['auc']:.4f} accuracy {methods[method]['accuracy']:.4f} "
            f"({methods[method]['seconds']:.0f} s)",
            flush=True,
        )
    ratios = {}
    if "centralized" in methods:
        for m in ("fedavg", "fedprox"):
            if m in methods:
                ratios[f"{m}_over_centralized_auc"] = methods[m]["auc"] / methods["centralized"]["auc"]
    for key, value in ratios.items():
        print(f"{key}: {value:.4f}")
    record = {
        "dataset": {
            "source": args.npz.name,
            "alpha": args.alpha,
            "seed": args.seed,
            "sites": manifest["sites"],
        },
        "settings": {
            "model": args.model,
            "image_size": size,
            "optimizer": "adam",
            "lr": args.lr,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "rounds": args.rounds,
            "local_epochs": 1,
            "fedprox_mu": args.mu,
            "augment": augment,
            "intensity": args.intensity,
            "selection": "best validation AUC (pooled; a local-only model its own site's); test read once",
            "torch_threads": args.threads,
        },
        "decode": decode,
        "methods": methods,
        "ratios": ratios,
        "hardware": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "load_average": list(os.getloadavg()),
        },
        "seconds": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out} in {record['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
