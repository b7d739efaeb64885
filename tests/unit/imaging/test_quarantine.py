"""A folder of deliberately broken files: each one lands in the quarantine with its reason; the rest train."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from fedhealth.imaging.labels import LabelSpec, write_labels
from fedhealth.imaging.phi_audit import PHI_TAGS
from fedhealth.imaging.quarantine import (
    EMPTY_FILE,
    MULTI_FRAME,
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

JPEG2000_PART2_MC = "1.2.840.10008.1.2.4.92"  # a syntax some PACS write and no installed plug-in decodes
# file name in the folder -> expected reason (None: a valid image)
EXPECTED = {
    "good_1.dcm": None,
    "good_2.dcm": None,
    "nested/good_3.dcm": None,
    "jpeg_ls.dcm": None,  # JPEG-LS lossless: decoded by pylibjpeg-libjpeg
    "no_preamble.dcm": None,  # the 128-byte preamble and 'DICM' prefix stripped
    "pixel_data_cut.dcm": TRUNCATED,  # a transfer cut inside the pixel data
    "header_cut.dcm": TRUNCATED,  # cut inside a header element
    "empty.dcm": EMPTY_FILE,  # a 0-byte file
    "no_pixels.dcm": NO_PIXEL_DATA,  # an image SOP class with its Pixel Data removed
    "j2k_part2.dcm": UNSUPPORTED_TRANSFER_SYNTAX,  # JPEG 2000 Part 2 multi-component: no decoder
    "mr_volume.dcm": MULTI_FRAME,  # a 10-frame MR (pydicom's emri_small.dcm)
    "report_sr.dcm": NON_IMAGE_OBJECT,  # a structured report
    "rt_plan.dcm": NON_IMAGE_OBJECT,  # a radiotherapy plan
    "garbage.bin": UNREADABLE,
    "IMG0001": UNREADABLE,  # a text file with no extension, as PACS exports name files
}


def _good(path: Path, seed: int) -> None:
    image = np.random.default_rng(seed).integers(0, 255, size=(28, 28)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_dicom(image, ScannerProfile(), ["quarantine-test", str(seed)]).save_as(path, enforce_file_format=True)


def _deidentified(path: str) -> pydicom.Dataset:
    """A pydicom test file without the identifying attributes the site's PHI gate refuses."""
    ds = pydicom.dcmread(path)
    for keyword in PHI_TAGS:
        if keyword in ds:
            delattr(ds, keyword)
    return ds


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
    _deidentified(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")).save_as(folder / "jpeg_ls.dcm")
    _deidentified(get_testdata_file("MR_small.dcm")).save_as(folder / "full.tmp", enforce_file_format=True)
    whole = (folder / "full.tmp").read_bytes()
    assert whole[128:132] == b"DICM"
    (folder / "no_preamble.dcm").write_bytes(whole[132:])  # starts with the file meta group
    (folder / "full.tmp").unlink()
    (folder / "empty.dcm").write_bytes(b"")
    part2 = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    part2.file_meta.TransferSyntaxUID = JPEG2000_PART2_MC  # a real J2K stream, a syntax with no decoder
    part2.save_as(folder / "j2k_part2.dcm", enforce_file_format=True)
    shutil.copy(get_testdata_file("emri_small.dcm"), folder / "mr_volume.dcm")
    shutil.copy(get_testdata_file("test-SR.dcm"), folder / "report_sr.dcm")
    shutil.copy(get_testdata_file("rtplan.dcm"), folder / "rt_plan.dcm")
    (folder / "garbage.bin").write_bytes(np.random.default_rng(0).bytes(3000))
    (folder / "IMG0001").write_text("patient list\n" * 50)
    names = ["good_1.dcm", "good_2.dcm", "nested/good_3.dcm", "jpeg_ls.dcm", "no_preamble.dcm"]
    write_labels(folder / LABELS_FILE, names, np.array([0, 1, 1, 0, 1]), LabelSpec("binary"))
    return folder


def test_each_broken_file_gets_its_reason(broken_folder: Path) -> None:
    files = candidate_files(broken_folder)
    assert sorted(str(p.relative_to(broken_folder)) for p in files) == sorted(EXPECTED)  # labels.csv skipped
    got = {}
    for path in files:
        check = check_file(path, broken_folder)
        got[str(path.relative_to(broken_folder))] = None if check.entry is None else check.entry.reason
        assert (check.pixels is None) == (check.entry is not None)
    assert got == EXPECTED


def test_training_goes_on_with_the_valid_files_and_reports_the_rest(broken_folder: Path) -> None:
    _good(broken_folder / "unlabelled.dcm", 99)
    split = load_split(broken_folder, LabelSpec("binary"), PipelineSettings(min_images=3))
    assert split.x.shape == (5, 1, 28, 28)
    assert split.y.tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]  # good_1, good_2, jpeg_ls, nested/3, no_preamble
    report = split.quarantine.as_dict()
    assert report["counts"] == {
        TRUNCATED: 2,
        EMPTY_FILE: 1,
        NO_PIXEL_DATA: 1,
        UNSUPPORTED_TRANSFER_SYNTAX: 1,
        MULTI_FRAME: 1,
        NON_IMAGE_OBJECT: 2,
        UNREADABLE: 2,
        NO_LABEL: 1,
    }
    details = {f["file"]: f["detail"] for f in report["files"]}
    assert details["j2k_part2.dcm"] == (
        "no installed decoder for transfer syntax "
        "'JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)'"
    )
    assert details["mr_volume.dcm"] == "10 frames; a 2-D classifier takes one image per file"
    assert details["empty.dcm"] == "the file is empty (0 bytes)"
    assert "Comprehensive SR" in details["report_sr.dcm"] and "RT Plan" in details["rt_plan.dcm"]


def test_below_the_minimum_count_a_clear_error(broken_folder: Path) -> None:
    with pytest.raises(TooFewImagesError) as info:
        load_split(broken_folder, LabelSpec("binary"), PipelineSettings(min_images=6))
    message = str(info.value)
    assert "only 5 usable DICOM images, fewer than the minimum of 6" in message
    assert "split 'train'" in message and f"{TRUNCATED}: 2" in message and f"{UNREADABLE}: 2" in message
