"""A folder of deliberately broken files: each one lands in the quarantine with its reason; the rest train."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from fedhealth.imaging.labels import LabelSpec, write_labels
from fedhealth.imaging.quarantine import (
    NO_LABEL,
    NO_PIXEL_DATA,
    NON_IMAGE_OBJECT,
    TRUNCATED,
    UNREADABLE,
    UNSUPPORTED_TRANSFER_SYNTAX,
    TooFewImagesError,
    candidate_files,
    check_file,
)
from fedhealth.imaging.site import LABELS_FILE, PipelineSettings, load_split
from fedhealth_tools.imaging.converter import ScannerProfile, to_dicom

JPEG_LS_DECODER = importlib.util.find_spec("libjpeg") or importlib.util.find_spec("gdcm")
# file name in the folder -> expected reason (None: a valid image)
EXPECTED = {
    "good_1.dcm": None,
    "good_2.dcm": None,
    "nested/good_3.dcm": None,
    "pixel_data_cut.dcm": TRUNCATED,  # a transfer cut inside the pixel data
    "header_cut.dcm": TRUNCATED,  # cut inside a header element
    "no_pixels.dcm": NO_PIXEL_DATA,  # an image SOP class with its Pixel Data removed
    "jpeg_ls.dcm": UNSUPPORTED_TRANSFER_SYNTAX,  # JPEG-LS and no decoder installed
    "report_sr.dcm": NON_IMAGE_OBJECT,  # a structured report
    "rt_plan.dcm": NON_IMAGE_OBJECT,  # a radiotherapy plan
    "garbage.bin": UNREADABLE,
    "IMG0001": UNREADABLE,  # a text file with no extension, as PACS exports name files
}


def _good(path: Path, seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 255, size=(28, 28)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_dicom(image, ScannerProfile(), ["quarantine-test", str(seed)]).save_as(path, enforce_file_format=True)


@pytest.fixture
def broken_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "train"
    for i, name in enumerate(n for n, r in EXPECTED.items() if r is None):
        _good(folder / name, i)
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (folder / "pixel_data_cut.dcm").write_bytes(ct[: len(ct) // 2])
    (folder / "header_cut.dcm").write_bytes(ct[:1001])
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(folder / "no_pixels.dcm")
    shutil.copy(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"), folder / "jpeg_ls.dcm")
    shutil.copy(get_testdata_file("test-SR.dcm"), folder / "report_sr.dcm")
    shutil.copy(get_testdata_file("rtplan.dcm"), folder / "rt_plan.dcm")
    (folder / "garbage.bin").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "IMG0001").write_text("patient list\n" * 50)
    names = ["good_1.dcm", "good_2.dcm", "nested/good_3.dcm"]
    write_labels(folder / LABELS_FILE, names, np.array([0, 1, 1]), LabelSpec("binary"))
    return folder


@pytest.mark.skipif(JPEG_LS_DECODER is not None, reason="a JPEG-LS decoder is installed here")
def test_each_broken_file_gets_its_reason(broken_folder: Path) -> None:
    files = candidate_files(broken_folder)
    assert sorted(str(p.relative_to(broken_folder)) for p in files) == sorted(EXPECTED)  # labels.csv skipped
    got = {}
    for path in files:
        check = check_file(path, broken_folder)
        got[str(path.relative_to(broken_folder))] = None if check.entry is None else check.entry.reason
        assert (check.pixels is None) == (check.entry is not None)
    assert got == EXPECTED


@pytest.mark.skipif(JPEG_LS_DECODER is not None, reason="a JPEG-LS decoder is installed here")
def test_training_goes_on_with_the_valid_files_and_reports_the_rest(broken_folder: Path) -> None:
    _good(broken_folder / "unlabelled.dcm", 99)
    split = load_split(broken_folder, LabelSpec("binary"), PipelineSettings(min_images=3))
    assert split.x.shape == (3, 1, 28, 28) and split.y.tolist() == [0.0, 1.0, 1.0]
    report = split.quarantine.as_dict()
    assert report["counts"] == {
        TRUNCATED: 2,
        NO_PIXEL_DATA: 1,
        UNSUPPORTED_TRANSFER_SYNTAX: 1,
        NON_IMAGE_OBJECT: 2,
        UNREADABLE: 2,
        NO_LABEL: 1,
    }
    details = {f["file"]: f["detail"] for f in report["files"]}
    assert "JPEG-LS" in details["jpeg_ls.dcm"] and "Comprehensive SR" in details["report_sr.dcm"]
    assert "RT Plan" in details["rt_plan.dcm"]


def test_below_the_minimum_count_a_clear_error(broken_folder: Path) -> None:
    with pytest.raises(TooFewImagesError) as info:
        load_split(broken_folder, LabelSpec("binary"), PipelineSettings(min_images=4))
    message = str(info.value)
    assert "only 3 usable DICOM images, fewer than the minimum of 4" in message
    assert "split 'train'" in message and f"{TRUNCATED}: 2" in message and f"{UNREADABLE}: 2" in message
