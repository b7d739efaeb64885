"""A tiny labelled DICOM site with a learnable signal, for tests and smoke runs without MedMNIST.

Each image is noise plus, for the positive class, a bright square; the files are real DICOM objects
written by the converter's :func:`fedhealth_tools.imaging.converter.to_dicom`. ``identified=True`` fills
in a made-up patient name and ID, to exercise the PHI audit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedhealth.imaging.labels import LabelSpec, write_labels
from fedhealth.imaging.site import CXR_DATASET_DIR, LABELS_FILE, SPLITS
from fedhealth_tools.imaging.converter import ScannerProfile, to_dicom

FAKE_NAME = "Doe^Jane"
FAKE_ID = "MRN-0042"


def write_synthetic_site(
    root: Path, *, n: int = 24, seed: int = 0, profile: ScannerProfile | None = None, identified: bool = False
) -> Path:
    """Write ``root/cxr/{train,val,test}`` with ``n`` images each (half positive) and their labels."""
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        folder = Path(root) / CXR_DATASET_DIR / split
        folder.mkdir(parents=True, exist_ok=True)
        labels = np.arange(n) % 2
        names = []
        for i, label in enumerate(labels):
            image = rng.integers(0, 90, size=(28, 28)).astype(np.uint8)
            if label:
                image[8:20, 8:20] = 220
            ds = to_dicom(image, profile or ScannerProfile(), ["synthetic", str(seed), split, str(i)])
            if identified:
                ds.PatientName, ds.PatientID = FAKE_NAME, FAKE_ID
            name = f"img_{i:03d}.dcm"
            ds.save_as(folder / name, enforce_file_format=True)
            names.append(name)
        write_labels(folder / LABELS_FILE, names, labels, LabelSpec("binary"))
    return Path(root)


def write_synthetic_npz(
    path: Path, *, n: int = 60, n_classes: int = 5, channels: int = 3, size: int = 28, seed: int = 0
) -> Path:
    """A MedMNIST-shaped ``.npz`` (``{split}_images`` uint8, ``{split}_labels`` ``(n, 1)``) of noise.

    Stands in for a set that is not bundled (RetinaMNIST: ``n_classes=5, channels=3``); its file name
    picks the converter's table row. Every class occurs in every split.
    """
    rng = np.random.default_rng(seed)
    shape = (n, size, size, 3) if channels == 3 else (n, size, size)
    arrays = {}
    for split in SPLITS:
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % n_classes).astype(np.uint8).reshape(n, 1)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return Path(path)
