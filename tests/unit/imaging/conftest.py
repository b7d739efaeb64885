"""Fixtures of the imaging tests: MedMNIST files (PneumoniaMNIST is bundled; a MedMNIST-shaped RGB
five-class stand-in for RetinaMNIST, which is not) and tiny DICOM sites."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhealth_tools.imaging.converter import medmnist_file
from fedhealth_tools.imaging.synthetic import write_synthetic_npz, write_synthetic_site


@pytest.fixture
def pneumonia_npz() -> Path:
    return medmnist_file("pneumoniamnist")  # bundled with fedhealth-tools


@pytest.fixture
def retina_npz(tmp_path: Path) -> Path:
    """Noise shaped like RetinaMNIST (RGB, grades 0-4), named so that the converter's table applies."""
    return write_synthetic_npz(tmp_path / "npz" / "retinamnist.npz", n=60, n_classes=5, channels=3)


@pytest.fixture
def make_site():
    """``make_site(root, n=..., seed=..., profile=..., identified=...)`` writes a synthetic DICOM site."""
    return write_synthetic_site
