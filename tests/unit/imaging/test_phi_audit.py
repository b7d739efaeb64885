"""The PHI audit names tags and counts, never a value, and a site can refuse identified data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.phi_audit import (
    PHI_TAGS,
    PhiError,
    identifying_tags,
    phi_summary,
    require_deidentified,
)
from fedhealth.imaging.site import CXR_DATASET_DIR, PipelineSettings, load_site_images
from fedhealth_tools.imaging.converter import ScannerProfile, to_dicom

CR_FILE = (
    Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "77654033" / "CR3" / "6278"
)
# (attributes set on a clean file, expected tags)
CASES = [
    ({}, []),
    ({"PatientName": "Doe^Jane"}, ["PatientName"]),
    ({"PatientName": "^^", "PatientID": ""}, []),  # empty person name components only
    (
        {"PatientID": "MRN-77", "InstitutionName": "St Elsewhere", "OperatorsName": "Smith^Al"},
        ["PatientID", "InstitutionName", "OperatorsName"],
    ),
]


def _values(ds: pydicom.Dataset) -> list[str]:
    return [str(ds.get(t)) for t in PHI_TAGS if ds.get(t) not in (None, "")]


@pytest.mark.parametrize(("attrs", "expected"), CASES)
def test_identifying_tags_by_name(attrs: dict, expected: list[str]) -> None:
    ds = to_dicom(np.zeros((8, 8), np.uint8), ScannerProfile(), ["phi", str(attrs)])
    for key, value in attrs.items():
        setattr(ds, key, value)
    assert sorted(identifying_tags(ds)) == sorted(expected)


def test_real_radiograph_audit_counts_tags_and_never_emits_a_value() -> None:
    ds = pydicom.dcmread(str(CR_FILE))
    values = _values(ds)
    assert "Doe^Archibald" in values and "77654033" in values  # a real name and patient ID
    summary = phi_summary([identifying_tags(ds)] * 3 + [[]])
    assert summary["n_files"] == 4 and summary["n_identified"] == 3
    assert summary["tags"]["PatientName"] == 3 and summary["tags"]["PatientID"] == 3
    with pytest.raises(PhiError) as info:
        require_deidentified(summary)
    text = json.dumps(summary) + str(info.value)
    assert "PatientName (3)" in str(info.value) and "3 of 4 DICOM files" in str(info.value)
    for value in [v for v in values if len(v) > 2] + ["Archibald"]:
        assert value not in text, "a PHI value leaked into the audit"


def test_site_refuses_identified_files_unless_its_setting_allows(tmp_path: Path, make_site) -> None:
    root = make_site(tmp_path / "site", n=6, identified=True)
    with pytest.raises(PhiError) as info:
        load_site_images(root, LabelSpec("binary"), PipelineSettings())
    assert "Doe" not in str(info.value) and "MRN-0042" not in str(info.value)
    assert "6 of 6 DICOM files" in str(info.value) and "PatientID (6)" in str(info.value)
    splits = load_site_images(root, LabelSpec("binary"), PipelineSettings(require_deidentified=False))
    assert splits["train"].phi == {
        "n_files": 6,
        "n_identified": 6,
        "tags": {"PatientID": 6, "PatientName": 6},
    }
    assert (root / CXR_DATASET_DIR).is_dir()
