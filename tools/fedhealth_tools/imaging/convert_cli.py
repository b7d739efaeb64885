"""``fedhealth convert-medmnist``: a MedMNIST ``.npz`` -> per-site folders of DICOM files and label tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedhealth.constants import HEART_SITES
from fedhealth_tools.imaging.converter import (
    BUNDLED_DIR,
    DEFAULT_MIN_IMAGES,
    convert_medmnist,
    count_lines,
    how_to_get,
    medmnist_file,
)
from fedhealth_tools.imaging.medmnist_sets import set_name

BUNDLED = BUNDLED_DIR / "pneumoniamnist.npz"
FORMATTER = argparse.ArgumentDefaultsHelpFormatter  # --help shows every default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options (the parser should use :data:`FORMATTER` to show their defaults)."""
    parser.add_argument("--npz", type=Path, default=BUNDLED, help="MedMNIST v2 .npz file")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        default=argparse.SUPPRESS,
        help="folder of the site folders and manifest.json",
    )
    parser.add_argument("--sites", nargs="+", default=list(HEART_SITES), help="site names")
    parser.add_argument("--alpha", type=float, default=0.5, help="Dirichlet label skew (small: strong)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, scanners and UIDs")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many images per split; None: all"
    )
    parser.add_argument(
        "--no-scanner-shift", action="store_true", help="same simulated scanner at every site"
    )
    parser.add_argument(
        "--dataset",
        default=None,
        help="MedMNIST set name that picks modality and class names; None: from the file name",
    )
    parser.add_argument(
        "--min-images",
        type=int,
        default=DEFAULT_MIN_IMAGES,
        help="the job's min_images: warn about any site's split with fewer images",
    )


def run(args: argparse.Namespace) -> int:
    """Convert; print per-site counts by class name and warnings (stderr). Returns the exit code.

    Exit code 1 with a message saying how to get the file when ``--npz`` does not exist.
    """
    npz = Path(args.npz)
    if npz == BUNDLED:
        npz = medmnist_file("pneumoniamnist")  # checksum verified
    if not npz.is_file():
        print(f"fedhealth convert-medmnist: {npz} not found. {how_to_get(set_name(npz))}.", file=sys.stderr)
        return 1
    manifest = convert_medmnist(
        npz,
        args.out,
        sites=args.sites,
        alpha=args.alpha,
        seed=args.seed,
        limit=args.limit,
        scanner_shift=not args.no_scanner_shift,
        dataset=args.dataset,
        min_images=args.min_images,
    )
    for line in count_lines(manifest):
        print(line)
    for site, info in manifest["sites"].items():
        print(f"{site} -> {info['root']}")
    positive = f", positive class {manifest['positive_class']!r}" if manifest["positive_class"] else ""
    print(
        f"{manifest['dataset']}: {manifest['modality']}, {manifest['label_task']} task{positive}, "
        f"{manifest['channels']} channel(s); manifest in {args.out}/manifest.json"
    )
    for warning in manifest["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
