"""MedMNIST -> per-site DICOM folders: counts and labels round-trip, real DICOM objects, non-IID sites."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from fedhealth.imaging.dicom_reader import read_dicom
from fedhealth.imaging.labels import LabelSpec, read_labels
from fedhealth.imaging.site import CXR_DATASET_DIR, LABELS_FILE, SPLITS, PipelineSettings, load_site_images
from fedhealth_tools.imaging.converter import (
    BUNDLED_DIR,
    BUNDLED_MD5,
    MANIFEST_FILE,
    SHARED_ENV,
    convert_medmnist,
    dirichlet_split,
    medmnist_file,
    scanner_profiles,
    verified,
)

PNEUMONIA_SHA256 = "e1792d3f03751cb101e99f19a63b3c1941436c988665f47853417b05be250cd8"  # MedMNIST README
SITES = ["north", "south", "east"]
LIMIT = 90
# (alpha, largest share of one class at one site we expect at least / at most)
SKEW = [(0.1, 0.6, 1.0), (100.0, 0.0, 0.55)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory, request) -> tuple[Path, dict, Path]:
    npz = request.getfixturevalue("pneumonia_npz")
    out = tmp_path_factory.mktemp("cxr")
    return out, convert_medmnist(npz, out, sites=SITES, alpha=0.5, seed=3, limit=LIMIT), npz


@pytest.fixture(scope="module")
def pneumonia_npz() -> Path:  # module scope for the fixture above
    return medmnist_file("pneumoniamnist")


def test_pneumoniamnist_is_bundled_and_is_the_official_file(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SHARED_ENV, str(tmp_path))  # the override names other files, not the bundled one
    path = medmnist_file("pneumoniamnist")
    assert path == BUNDLED_DIR / "pneumoniamnist.npz" and path.stat().st_size == 4_170_669
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PNEUMONIA_SHA256
    with np.load(path) as data:
        assert data["train_images"].shape == (4708, 28, 28) and data["test_labels"].shape == (624, 1)
    assert medmnist_file("retinamnist") == tmp_path / "data" / "medmnist" / "retinamnist.npz"


def test_a_changed_copy_fails_its_checksum_with_both_sums(tmp_path: Path) -> None:
    copy = tmp_path / "pneumoniamnist.npz"
    copy.write_bytes(medmnist_file("pneumoniamnist").read_bytes()[:-1])  # one byte short
    with pytest.raises(ValueError) as info:
        verified(copy, BUNDLED_MD5["pneumoniamnist"])
    assert str(copy) in str(info.value) and "not the official 28209eda62fecd6e6a2d98b1501bb15f" in str(
        info.value
    )
    with pytest.raises(ValueError, match="is missing"):
        verified(tmp_path / "absent.npz", BUNDLED_MD5["pneumoniamnist"])


def test_counts_and_labels_round_trip(converted) -> None:
    out, manifest, npz = converted
    data = np.load(npz)
    assert json.loads((out / MANIFEST_FILE).read_text()) == manifest
    assert manifest["label_task"] == "binary" and manifest["channels"] == 1
    for split in SPLITS:
        assert sum(manifest["sites"][s]["counts"][split]["n"] for s in SITES) == LIMIT
        seen = set()
        for site in SITES:
            folder = out / site / CXR_DATASET_DIR / split
            _, labels = read_labels(folder / LABELS_FILE, LabelSpec("binary"))
            assert (
                len(labels)
                == manifest["sites"][site]["counts"][split]["n"]
                == len(list(folder.glob("*.dcm")))
            )
            for name, label in labels.items():
                index = int(name[-9:-4])
                assert label == data[f"{split}_labels"][index, 0]
                seen.add(index)
        assert len(seen) == LIMIT  # every kept image at exactly one site


def test_files_are_real_dicom_objects_that_decode_back_through_the_scanner(converted) -> None:
    out, manifest, npz = converted
    data = np.load(npz)
    profiles = scanner_profiles(len(SITES), seed=3)
    uids = set()
    for s, site in enumerate(SITES):
        path = sorted((out / site / CXR_DATASET_DIR / "val").glob("*.dcm"))[0]
        ds, pixels = read_dicom(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1" and ds.Modality == "DX"  # DX for presentation
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.PhotometricInterpretation == ("MONOCHROME1" if s % 2 else "MONOCHROME2")
        assert float(ds.PixelSpacing[0]) == pytest.approx(350 / 28, abs=1e-3) and ds.BitsStored == 12
        assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientName) == ""
        uids |= {ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID}
        original = data["val_images"][int(path.name[-9:-4])] / 255.0
        np.testing.assert_allclose(pixels, profiles[s].apply(original), atol=0.5 / 4095 + 1e-6)
    assert len(uids) == 3 * len(SITES)
    pydicom.dcmread(path, force=False)  # a conformant file with preamble and meta


def test_sites_load_with_the_pipeline(converted) -> None:
    out, manifest, _ = converted
    splits = load_site_images(out / SITES[0], LabelSpec("binary"), PipelineSettings(size=32))
    for split in SPLITS:
        assert splits[split].x.shape == (manifest["sites"][SITES[0]]["counts"][split]["n"], 1, 32, 32)
        assert splits[split].quarantine.entries == [] and splits[split].phi["n_identified"] == 0


@pytest.mark.parametrize(("alpha", "at_least", "at_most"), SKEW)
def test_dirichlet_alpha_controls_label_skew(alpha: float, at_least: float, at_most: float) -> None:
    rng = np.random.default_rng(0)
    labels = {"train": np.repeat([0, 1], 400), "test": np.repeat([0, 1], 100)}
    parts = dirichlet_split(labels, 4, alpha, rng)
    shares = [np.mean(labels["train"][p]) for p in parts["train"]]
    spread = max(abs(s - 0.5) for s in shares) + 0.5
    assert at_least <= spread <= at_most
    assert sorted(np.concatenate(parts["train"]).tolist()) == list(range(800))


def test_rgb_five_class_retina_by_configuration_alone(retina_npz: Path, tmp_path: Path) -> None:
    manifest = convert_medmnist(retina_npz, tmp_path, sites=["a", "b"], alpha=1.0, seed=0, limit=60)
    assert (
        manifest["label_task"] == "multiclass" and manifest["channels"] == 3 and len(manifest["classes"]) == 5
    )
    spec = LabelSpec("multiclass", tuple(manifest["classes"]))
    splits = load_site_images(tmp_path / "a", spec, PipelineSettings(size=28, channels=3))
    ds = pydicom.dcmread(sorted((tmp_path / "a" / CXR_DATASET_DIR / "train").glob("*.dcm"))[0])
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    train = splits["train"]
    assert train.x.shape[1:] == (3, 28, 28) and train.y.dtype == np.int64 and set(train.y) <= set(range(5))
