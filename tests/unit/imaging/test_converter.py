"""MedMNIST -> per-site DICOM folders: counts and labels round-trip, real DICOM objects, non-IID sites."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from fedhealth.imaging.dicom_reader import read_dicom
from fedhealth.imaging.labels import CLASSES_FILE, LabelError, LabelSpec, read_labels
from fedhealth.imaging.site import CXR_DATASET_DIR, LABELS_FILE, SPLITS, PipelineSettings, load_site_images
from fedhealth_tools.imaging.converter import (
    BUNDLED_DIR,
    BUNDLED_MD5,
    MANIFEST_FILE,
    convert_medmnist,
    dirichlet_split,
    medmnist_file,
    scanner_profiles,
    verified,
)
from fedhealth_tools.imaging.medmnist_sets import TABLE_FILE, medmnist_set, medmnist_table
from fedhealth_tools.imaging.synthetic import write_synthetic_npz

PNEUMONIA_SHA256 = "e1792d3f03751cb101e99f19a63b3c1941436c988665f47853417b05be250cd8"  # MedMNIST README
SITES = ["north", "south", "east"]
LIMIT = 90
# (alpha, largest share of one class at one site we expect at least / at most)
SKEW = [(0.1, 0.6, 1.0), (100.0, 0.0, 0.55)]
SC_UID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
UNKNOWN = "is not in the table of MedMNIST sets: OT, no names"


@pytest.fixture(scope="module")
def converted(tmp_path_factory, request) -> tuple[Path, dict, Path]:
    npz = request.getfixturevalue("pneumonia_npz")
    out = tmp_path_factory.mktemp("cxr")
    return out, convert_medmnist(npz, out, sites=SITES, alpha=0.5, seed=3, limit=LIMIT), npz


@pytest.fixture(scope="module")
def pneumonia_npz() -> Path:  # module scope for the fixture above
    return medmnist_file("pneumoniamnist")


def test_pneumoniamnist_is_bundled_and_is_the_official_file(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDHEALTH_SHARED_DIR", str(tmp_path))  # no folder beside the checkout is read
    path = medmnist_file("pneumoniamnist")
    assert path == BUNDLED_DIR / "pneumoniamnist.npz" and path.stat().st_size == 4_170_669
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PNEUMONIA_SHA256
    with np.load(path) as data:
        assert data["train_images"].shape == (4708, 28, 28) and data["test_labels"].shape == (624, 1)
    with pytest.raises(ValueError) as info:
        medmnist_file("retinamnist")  # not bundled: the message says how to get it
    message = str(info.value)
    assert message.startswith("retinamnist.npz is not bundled (only pneumoniamnist is)")
    assert "pip install medmnist" in message and "m.INFO['retinamnist']['python_class']" in message
    assert "https://zenodo.org/records/10519652/files/retinamnist.npz" in message and "--npz" in message


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
    assert manifest["classes"] == ["normal", "pneumonia"] and manifest["positive_class"] == "pneumonia"
    assert (manifest["dataset"], manifest["modality"], manifest["min_images"]) == ("pneumoniamnist", "DX", 10)
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
    assert manifest["classes"] == ["0", "1", "2", "3", "4"] and manifest["positive_class"] is None
    spec = LabelSpec("multiclass", tuple(manifest["classes"]))
    splits = load_site_images(tmp_path / "a", spec, PipelineSettings(size=28, channels=3))
    ds = pydicom.dcmread(sorted((tmp_path / "a" / CXR_DATASET_DIR / "train").glob("*.dcm"))[0])
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.Modality == "OP"  # fundus, Secondary Capture
    train = splits["train"]
    assert train.x.shape[1:] == (3, 28, 28) and train.y.dtype == np.int64 and set(train.y) <= set(range(5))


# (file name, channels, classes in the labels, Modality, SOP class UID, class names, positive class)
SETS = [
    ("breastmnist.npz", 1, 2, "US", SC_UID, ["malignant", "normal, benign"], "malignant"),
    ("dermamnist.npz", 3, 7, "XC", SC_UID, ["actinic keratoses and intraepithelial carcinoma"], None),
    ("organamnist_64.npz", 1, 11, "CT", SC_UID, ["bladder", "femur-left"], None),
    ("octmnist.npz", 1, 4, "OPT", SC_UID, ["choroidal neovascularization"], None),
    ("bloodmnist.npz", 3, 8, "GM", SC_UID, ["basophil", "eosinophil"], None),
    ("mystery.npz", 1, 2, "OT", SC_UID, ["0", "1"], "1"),
    ("mystery.npz", 1, 3, "OT", SC_UID, ["class_0", "class_1", "class_2"], None),
]


@pytest.mark.parametrize(("file", "channels", "k", "modality", "sop", "names", "positive"), SETS)
def test_each_set_is_written_as_its_own_modality_with_its_class_names(
    tmp_path: Path, file: str, channels: int, k: int, modality: str, sop: str, names: list, positive
) -> None:
    npz = write_synthetic_npz(tmp_path / file, n=3 * k, n_classes=k, channels=channels, size=8)
    manifest = convert_medmnist(npz, tmp_path / "out", sites=["a"], alpha=1.0, min_images=1)
    assert (manifest["modality"], manifest["sop_class"].endswith("Storage")) == (modality, True)
    assert manifest["classes"][: len(names)] == names and len(manifest["classes"]) == max(k, 2)
    assert manifest["positive_class"] == positive
    assert manifest["warnings"] == ([] if file != "mystery.npz" else [f"mystery {UNKNOWN}"])
    ds = pydicom.dcmread(sorted((tmp_path / "out" / "a" / CXR_DATASET_DIR / "test").glob("*.dcm"))[0])
    assert (ds.Modality, ds.SOPClassUID, ds.ConversionType) == (modality, sop, "WSD")
    assert "PresentationIntentType" not in ds and ds.SamplesPerPixel == channels
    meta = json.loads((tmp_path / "out" / "a" / CXR_DATASET_DIR / "test" / CLASSES_FILE).read_text())
    assert meta["classes"] == manifest["classes"] and meta.get("positive_class") == positive


def test_the_table_cites_its_source_and_names_every_class() -> None:
    table = medmnist_table()
    assert "medmnist" in json.loads(TABLE_FILE.read_text())["source"]
    assert table["pneumoniamnist"].spec == LabelSpec("binary", ("normal", "pneumonia"), "pneumonia")
    assert table["breastmnist"].spec.positive_index == 0  # malignant is stored as 0
    assert all(
        len(row.classes) >= 2 and row.sop_class_uid.startswith("1.2.840.10008.") for row in table.values()
    )
    with pytest.raises(ValueError, match="the labels hold 3 classes, the table of MedMNIST sets names 2"):
        medmnist_set("pneumoniamnist", 3)


def test_breastmnist_sites_read_malignant_as_positive_and_refuse_a_job_that_reads_1(tmp_path: Path) -> None:
    npz = write_synthetic_npz(tmp_path / "breastmnist.npz", n=20, n_classes=2, channels=1, size=8)
    convert_medmnist(npz, tmp_path / "out", sites=["a"], alpha=1.0, min_images=1)
    folder = tmp_path / "out" / "a" / CXR_DATASET_DIR / "train"
    stored = {
        row.split(",")[0]: int(row.split(",")[-1]) for row in (folder / LABELS_FILE).read_text().split()[1:]
    }
    assert sorted(set(stored.values())) == [0, 1]  # the file keeps MedMNIST's own labels
    spec = LabelSpec("binary", ("malignant", "normal, benign"), "malignant")
    _, labels = read_labels(folder / LABELS_FILE, spec)
    assert {k: int(v) for k, v in labels.items()} == {k: 1 - v for k, v in stored.items()}  # 1 = malignant
    for wrong in (
        LabelSpec("binary"),
        LabelSpec("binary", ("malignant", "normal, benign"), "normal, benign"),
    ):
        with pytest.raises(LabelError) as info:
            read_labels(folder / LABELS_FILE, wrong)
        assert "classes.json beside label file train/labels.csv says 0 = 'malignant'" in str(info.value)
        assert "set the job's classes and positive_class to match" in str(info.value)
