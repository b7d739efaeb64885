"""Fixtures of the imaging tests: MedMNIST files (skip when ../shared is absent) and tiny DICOM sites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedhealth.imaging.converter import SHARED_ENV, ScannerProfile, medmnist_file, to_dicom
from fedhealth.imaging.labels import LabelSpec, write_labels
from fedhealth.imaging.site import CXR_DATASET_DIR, LABELS_FILE, SPLITS


def _shared_npz(name: str) -> Path:
    path = medmnist_file(name)
    if not path.is_file():
        pytest.skip(
            f"{path} is absent: the MedMNIST files live in ../shared/data/medmnist (or set {SHARED_ENV})"
        )
    return path


def _synthetic_site(
    root: Path, *, n: int = 24, seed: int = 0, profile: ScannerProfile | None = None, identified: bool = False
) -> Path:
    """A site folder of real DICOM files whose class shows as a bright square (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    for split in SPLITS:
        folder = root / CXR_DATASET_DIR / split
        folder.mkdir(parents=True)
        labels = np.arange(n) % 2
        names = []
        for i, label in enumerate(labels):
            image = rng.integers(0, 90, size=(28, 28)).astype(np.uint8)
            if label:
                image[8:20, 8:20] = 220
            ds = to_dicom(image, profile or ScannerProfile(), ["synthetic", str(seed), split, str(i)])
            if identified:
                ds.PatientName = "Doe^Jane"
                ds.PatientID = "MRN-0042"
            name = f"img_{i:03d}.dcm"
            ds.save_as(folder / name, enforce_file_format=True)
            names.append(name)
        write_labels(folder / LABELS_FILE, names, labels, LabelSpec("binary"))
    return root


@pytest.fixture
def pneumonia_npz() -> Path:
    return _shared_npz("pneumoniamnist")


@pytest.fixture
def retina_npz() -> Path:
    return _shared_npz("retinamnist")


@pytest.fixture
def make_site():
    """``make_site(root, n=..., seed=..., profile=..., identified=...)`` writes a synthetic DICOM site."""
    return _synthetic_site
