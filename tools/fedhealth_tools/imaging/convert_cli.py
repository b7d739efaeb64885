"""``fedhealth convert-medmnist``: a MedMNIST ``.npz`` -> per-site folders of DICOM files and label tables."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedhealth.constants import HEART_SITES
from fedhealth_tools.imaging.converter import convert_medmnist, medmnist_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument(
        "--npz", type=Path, default=None, help="MedMNIST v2 file (default: the bundled PneumoniaMNIST)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder of the site folders and manifest.json"
    )
    parser.add_argument("--sites", nargs="+", default=list(HEART_SITES), help="site names")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew (small: strong)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per split")
    parser.add_argument(
        "--no-scanner-shift", action="store_true", help="same simulated scanner at every site"
    )


def run(args: argparse.Namespace) -> int:
    """Convert; print per-site counts. Returns the exit code (1 with a message when the file is missing)."""
    args.npz = args.npz or medmnist_file("pneumoniamnist")
    if not Path(args.npz).is_file():
        print(f"fedhealth convert-medmnist: {args.npz} not found", flush=True)
        return 1
    manifest = convert_medmnist(
        args.npz,
        args.out,
        sites=args.sites,
        alpha=args.alpha,
        seed=args.seed,
        limit=args.limit,
        scanner_shift=not args.no_scanner_shift,
    )
    for site, info in manifest["sites"].items():
        counts = {split: c["per_class"] for split, c in info["counts"].items()}
        print(f"{site}: {json.dumps(counts)} -> {info['root']}")
    task, channels = manifest["label_task"], manifest["channels"]
    print(f"{task} task, {channels} channel(s); manifest in {args.out}/manifest.json")
    return 0
