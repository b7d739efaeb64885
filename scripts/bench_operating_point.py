"""Operating point per site on PneumoniaMNIST: sensitivity and specificity at 0.5 vs at a threshold from val.

Run as ``python scripts/bench_operating_point.py --out results/bench_operating_point.json``.

The bundled PneumoniaMNIST is converted into four non-IID DICOM sites (Dirichlet α label skew, as in
``scripts/bench_cxr.py``), the small CNN is trained by in-process FedAvg (round kept on pooled
validation AUC), and each site's ``validate`` (:meth:`fedhealth.tasks.imaging.ImageSite.validate`) is
run under several ``operating_point`` settings. Recorded per site and setting: the threshold, how it
was chosen, the validation and test sensitivity/specificity at it, the test figures at 0.5, and the
"0.5 would have failed" sentence. Test labels are read only by ``validate``'s final figures.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "custom"))

from fedhealth.imaging.labels import LabelSpec  # noqa: E402
from fedhealth.imaging.site import PipelineSettings, load_site_images  # noqa: E402
from fedhealth.models.image_model import ImageModel  # noqa: E402
from fedhealth.tasks.imaging import ImageSite  # noqa: E402
from fedhealth.training.loops import LocalTrainConfig  # noqa: E402
from fedhealth.training.operating_point import OperatingPointConfig  # noqa: E402
from fedhealth_tools.imaging.converter import convert_medmnist, medmnist_file  # noqa: E402
from fedhealth_tools.imaging.federation import run_image_federation  # noqa: E402

SITES = ("site_a", "site_b", "site_c", "site_d")
SPEC = LabelSpec("binary")
# name -> operating_point task argument
SETTINGS = {
    "youden": {},
    "youden_min2": {"min_per_class": 2},
    "youden_temperature_min2": {"min_per_class": 2, "calibration": "temperature"},
    "youden_platt_min2": {"min_per_class": 2, "calibration": "platt"},
    "target_sens_0.9_min2": {"method": "target_sensitivity", "target_sensitivity": 0.9, "min_per_class": 2},
}


def _value(metric: dict) -> float | None:
    return metric.get("value")


def _row(op: dict) -> dict:
    return {
        "threshold": op["threshold"],
        "chosen_by": op["chosen_by"],
        "reason": op["reason"],
        "calibration": op["calibration"]["kind"],
        "calibration_params": op["calibration"]["params"],
        "val": op["val"],
        "test": {m: _value(op["test"][m]) for m in ("sensitivity", "specificity")},
        "test_ci": {m: [op["test"][m]["lo"], op["test"][m]["hi"]] for m in ("sensitivity", "specificity")},
        "test_at_0_5": {m: _value(op["test_at_0_5"][m]) for m in ("sensitivity", "specificity")},
        "half_failed": op["half_failed"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_operating_point.json"))
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=10, help="FedAvg rounds (one local epoch each)")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench_op_"))
    try:
        manifest = convert_medmnist(
            medmnist_file("pneumoniamnist"),
            work / "sites",
            sites=list(SITES),
            alpha=args.alpha,
            seed=args.seed,
        )
        settings = PipelineSettings(size=28, intensity="zscore")
        splits = {
            s: load_site_images(work / "sites" / s, SPEC, settings, cache_root=work / "cache" / s)
            for s in SITES
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sites = [ImageSite(s, splits[s], SPEC, augment=True) for s in SITES]
    config = LocalTrainConfig(lr=1e-3, batch_size=64, optimizer="adam")
    fit = run_image_federation(
        lambda: ImageModel("small_cnn", 1, 1, seed=args.seed),
        sites,
        config,
        rounds=args.rounds,
        seed=args.seed,
    )
    results: dict = {}
    for name, op_args in SETTINGS.items():
        results[name] = {}
        for site in sites:
            site.operating_point = OperatingPointConfig.from_dict(op_args)
            metrics = site.validate(fit.model, n_bootstrap=args.n_bootstrap)
            results[name][site.name] = {**_row(metrics["operating_point"]), "auc": metrics["auc"]}
            row = results[name][site.name]
            print(
                f"{name:26s} {site.name}: t={row['threshold']:.3f} ({row['chosen_by']}) "
                f"test sens/spec {row['test']} at 0.5 {row['test_at_0_5']}",
                flush=True,
            )
    record = {
        "dataset": {
            "source": "pneumoniamnist.npz (bundled)",
            "alpha": args.alpha,
            "seed": args.seed,
            "counts": {s: manifest["sites"][s]["counts"] for s in SITES},
            "positive_class": "1 (pneumonia)",
        },
        "training": {
            "method": "fedavg",
            "rounds": args.rounds,
            "best_round": fit.best_round,
            "model": "small_cnn",
        },
        "settings": SETTINGS,
        "results": results,
        "hardware": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
        },
        "seconds": time.perf_counter() - start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out} in {record['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
