"""Fixtures of the imaging tests: MedMNIST files (PneumoniaMNIST is bundled; RetinaMNIST skips when
../shared is absent) and tiny DICOM sites."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhealth_tools.imaging.converter import SHARED_ENV, medmnist_file
from fedhealth_tools.imaging.synthetic import write_synthetic_site


def _shared_npz(name: str) -> Path:
    path = medmnist_file(name)
    if not path.is_file():
        pytest.skip(f"{path} is absent: MedMNIST files live in ../shared/data/medmnist (or set {SHARED_ENV})")
    return path


@pytest.fixture
def pneumonia_npz() -> Path:
    return medmnist_file("pneumoniamnist")  # bundled with fedhealth-tools


@pytest.fixture
def retina_npz() -> Path:
    return _shared_npz("retinamnist")


@pytest.fixture
def make_site():
    """``make_site(root, n=..., seed=..., profile=..., identified=...)`` writes a synthetic DICOM site."""
    return write_synthetic_site
