"""Compressed PACS exports through the kit's own path (``check_file``: read, decode, display chain).

Real files that ship with pydicom and pydicom-data, against their uncompressed twins: lossless
syntaxes pixel-exact in display values; lossy ones within a stated tolerance in display units
(values in [0, 1]). Files only in pydicom-data skip when it is absent (it is a tools dependency).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import UID

from fedhealth.imaging.quarantine import MULTI_FRAME, UNREADABLE, UNSUPPORTED_IMAGE, check_file

HAS_DATA = importlib.util.find_spec("data_store") is not None
DATA = pytest.mark.skipif(not HAS_DATA, reason="pydicom-data 1.0.0 is not installed")

# (compressed, uncompressed twin, in pydicom-data only): decoded display values are identical.
LOSSLESS = [
    ("MR_small_RLE.dcm", "MR_small.dcm", False),  # RLE, 16-bit signed MR with a window
    ("SC_rgb_rle.dcm", "SC_rgb.dcm", False),  # RLE, 8-bit RGB
    ("SC_rgb_rle_16bit.dcm", "SC_rgb_16bit.dcm", True),  # RLE, 16-bit RGB
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", False),  # JPEG-LS lossless
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm", False),  # JPEG lossless, process 14 SV1, RGB
    ("MR_small_jp2klossless.dcm", "MR_small.dcm", False),  # JPEG 2000 lossless
    ("US1_J2KR.dcm", "US1_UNCR.dcm", True),  # JPEG 2000 lossless, YBR_RCT ultrasound -> RGB
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm", True),  # JPEG 2000 lossless, a PA chest radiograph, MONOCHROME1
    ("SC_rgb_gdcm_KY.dcm", "SC_rgb_gdcm2k_uncompressed.dcm", True),  # JPEG 2000 (reversible stream)
    ("RG1_J2KI.dcm", "RG1_UNCI.dcm", True),  # JPEG 2000 lossy = the reference decoder's output
]
# (lossy file, reference, max |difference|, mean |difference|) in display units. JPEG baseline
# against dcmtk's decoding of the same stream: IDCT and chroma upsampling round differently by up
# to 2 of 255 levels. Against the original image: the codec's own loss.
LOSSY = [
    ("SC_rgb_jpeg.dcm", "SC_rgb_jpeg_dcmd.dcm", False, 1 / 255, 0.01 / 255),
    ("SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb_dcmtk_ebcr_dcmd.dcm", True, 1 / 255, 0.01 / 255),
    ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "SC_rgb_dcmtk_ebcyn1_dcmd.dcm", True, 2 / 255, 0.15 / 255),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_ebcynp_dcmd.dcm", True, 2 / 255, 0.15 / 255),
    ("SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_dcmtk_ebcys2_dcmd.dcm", True, 1e-7, 1e-7),
    ("SC_rgb_dcmtk_+eb+cy+s4.dcm", "SC_rgb_dcmtk_ebcys4_dcmd.dcm", True, 1e-7, 1e-7),
    ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb.dcm", False, 6 / 255, 0.6 / 255),  # JPEG baseline vs original
    ("RG1_J2KI.dcm", "RG1_UNCR.dcm", True, 0.015, 0.002),  # JPEG 2000 lossy chest radiograph
    ("RG3_J2KI.dcm", "RG3_UNCR.dcm", True, 0.01, 0.001),
    ("MR2_J2KI.dcm", "MR2_UNCR.dcm", True, 0.065, 0.008),
]
# JPEG-LS near-lossless: the standard bounds every sample's error by the stream's NEAR parameter.
NEAR_LOSSLESS = [("SC_rgb_jls_lossy_line.dcm", "SC_rgb.dcm"), ("SC_rgb_jls_lossy_sample.dcm", "SC_rgb.dcm")]
# Compressed single-frame files with no twin: decoded, shape as stored, values in [0, 1].
NO_TWIN = [
    ("JPGExtended.dcm", False, (1024, 256)),  # JPEG Extended, 12-bit
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", True, (768, 1024)),  # JPEG lossless, 8-bit grayscale
    ("JPEG-LL.dcm", True, (1024, 256)),  # JPEG lossless, 16-bit
    ("JPEGLSNearLossless_08.dcm", False, (45, 10)),
    ("JPEGLSNearLossless_16.dcm", False, (50, 10)),
    ("JPEG2000.dcm", False, (1024, 256)),  # JPEG 2000, 16-bit
    ("GDCMJ2K_TextGBR.dcm", False, (400, 400, 3)),  # JPEG 2000 lossless, YBR_RCT
]
# Multi-frame compressed volumes: quarantined with their frame count, whatever the syntax.
MULTI = [("emri_small_RLE.dcm", False), ("emri_small_jpeg_ls_lossless.dcm", True)]
MULTI += [("emri_small_jpeg_2k_lossless.dcm", True), ("SC_rgb_rle_2frame.dcm", True)]


def _path(name: str) -> Path:
    return Path(get_testdata_file(name, download=False))


def _params(rows: list[tuple]) -> list:
    """Each row as a pytest param; rows whose third field is True need pydicom-data."""
    return [pytest.param(*row, marks=[DATA] if row[2] else [], id=row[0]) for row in rows]


def _display(name: str) -> np.ndarray:
    """The display values ``check_file`` gives; fails the test with the quarantine reason otherwise."""
    path = _path(name)
    check = check_file(path, path.parent)
    assert check.entry is None, f"{name} quarantined: {check.entry}"
    assert check.pixels is not None and check.pixels.dtype == np.float32
    assert float(check.pixels.min()) >= 0.0 and float(check.pixels.max()) <= 1.0
    return check.pixels


def _syntax(name: str) -> UID:
    return pydicom.dcmread(_path(name), stop_before_pixels=True).file_meta.TransferSyntaxUID


@pytest.mark.parametrize(("compressed", "twin", "data"), _params(LOSSLESS))
def test_lossless_syntaxes_decode_pixel_exact_against_the_uncompressed_twin(
    compressed: str, twin: str, data: bool
) -> None:
    assert _syntax(compressed).is_compressed and not _syntax(twin).is_compressed
    got, want = _display(compressed), _display(twin)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("lossy", "reference", "data", "max_abs", "mean_abs"), _params(LOSSY))
def test_lossy_syntaxes_decode_within_the_stated_tolerance(
    lossy: str, reference: str, data: bool, max_abs: float, mean_abs: float
) -> None:
    got, want = _display(lossy), _display(reference)
    assert got.shape == want.shape
    diff = np.abs(got.astype(np.float64) - want)
    assert diff.max() <= max_abs + 1e-6 and diff.mean() <= mean_abs


def _near(name: str) -> int:
    """The NEAR parameter of a JPEG-LS stream's first scan header (ITU-T T.87 C.2.3)."""
    frame = next(generate_frames(pydicom.dcmread(_path(name)).PixelData, number_of_frames=1))
    sos = frame.index(b"\xff\xda")
    n_components = frame[sos + 4]
    return frame[sos + 5 + 2 * n_components]


@pytest.mark.parametrize(("lossy", "original"), NEAR_LOSSLESS)
def test_jpeg_ls_near_lossless_error_is_bounded_by_near(lossy: str, original: str) -> None:
    near = _near(lossy)
    assert near == 2
    diff = np.abs(_display(lossy).astype(np.float64) - _display(original)) * 255
    assert 0 < diff.max() <= near + 1e-4  # lossy (not exact), and within NEAR levels of 255


@pytest.mark.parametrize(("name", "data", "shape"), _params(NO_TWIN))
def test_compressed_files_without_a_twin_are_accepted(name: str, data: bool, shape: tuple) -> None:
    assert _syntax(name).is_compressed
    got = _display(name)
    assert got.shape == shape and float(got.max()) > float(got.min())


@pytest.mark.parametrize(("name", "data"), [pytest.param(*r, marks=[DATA] if r[1] else []) for r in MULTI])
def test_multi_frame_volumes_are_quarantined_with_their_frame_count(name: str, data: bool) -> None:
    path = _path(name)
    check = check_file(path, path.parent)
    frames = int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames)
    assert check.pixels is None and check.entry is not None and check.entry.reason == MULTI_FRAME
    assert check.entry.detail == f"{frames} frames; a 2-D classifier takes one image per file"


def test_a_non_conformant_jpeg_stream_names_the_decoders_not_a_missing_one() -> None:
    """pydicom's JPEG-lossy.dcm: 12-bit JPEG Extended whose scan header no decoder accepts (GDCM
    refuses it too); JPGExtended.dcm is the same image, conformant, and decodes."""
    path = _path("JPEG-lossy.dcm")
    check = check_file(path, path.parent)
    assert check.entry is not None and check.entry.reason == UNSUPPORTED_IMAGE
    assert check.entry.detail == (
        "the installed decoders of transfer syntax 'JPEG Extended (Process 2 and 4)' "
        "cannot decode its pixel data (RuntimeError)"
    )


def test_a_file_without_preamble_decodes_like_the_original(tmp_path: Path) -> None:
    whole = _path("MR_small_jpeg_ls_lossless.dcm").read_bytes()
    assert whole[128:132] == b"DICM"
    (tmp_path / "IMG0001").write_bytes(whole[132:])  # the file meta group at byte 0
    check = check_file(tmp_path / "IMG0001", tmp_path)
    assert check.entry is None
    np.testing.assert_array_equal(check.pixels, _display("MR_small.dcm"))


def test_a_bare_data_set_without_file_meta_is_read_in_its_own_encoding(tmp_path: Path) -> None:
    ds = pydicom.dcmread(_path("MR_small.dcm"))
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.preamble = None
    ds.save_as(tmp_path / "bare", implicit_vr=True, little_endian=True)
    assert (tmp_path / "bare").read_bytes()[:2] == b"\x08\x00"  # group 0008 at byte 0, no 'DICM'
    check = check_file(tmp_path / "bare", tmp_path)
    assert check.entry is None
    assert check.dataset.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    np.testing.assert_array_equal(check.pixels, _display("MR_small.dcm"))


@pytest.mark.parametrize(
    "content",
    [b"patient list\n" * 50, b"\x02\x00\x10\x00" + bytes(400), np.random.default_rng(1).bytes(5000)],
    ids=["text", "zeros-after-a-meta-tag", "random"],
)
def test_text_and_garbage_stay_unreadable(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "f").write_bytes(content)
    check = check_file(tmp_path / "f", tmp_path)
    assert check.entry is not None and check.entry.reason == UNREADABLE
