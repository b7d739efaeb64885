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
