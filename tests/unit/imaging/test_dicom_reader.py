"""The DICOM display pipeline, pixel for pixel, on real files that ship with pydicom (and pydicom-data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from fedhealth.imaging.dicom_reader import DecodeSettings, decode, voi_output_range

CR_MONOCHROME1 = (
    Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "77654033" / "CR3" / "6278"
)


def _window(x: np.ndarray, center: float, width: float, lo: float, hi: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 linear window, written out independently of pydicom."""
    out = ((x - (center - 0.5)) / (width - 1) + 0.5) * (hi - lo) + lo
    out[x <= center - 0.5 - (width - 1) / 2] = lo
    out[x > center - 0.5 + (width - 1) / 2] = hi
    return out


def test_monochrome1_computed_radiograph_modality_lut_window_and_inversion_pixel_exact() -> None:
    ds = pydicom.dcmread(str(CR_MONOCHROME1))
    assert ds.PhotometricInterpretation == "MONOCHROME1" and float(ds.RescaleSlope) == 0.684
    stored = ds.pixel_array.astype(np.float64)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    lo, hi = intercept, (2**ds.BitsStored - 1) * slope + intercept
    windowed = _window(stored * slope + intercept, float(ds.WindowCenter), float(ds.WindowWidth), lo, hi)
    expected = (1.0 - (windowed - lo) / (hi - lo)).astype(np.float32)
    got = decode(ds)
    assert got.shape == (16, 16) and got.dtype == np.float32
    np.testing.assert_array_max_ulp(got, expected, maxulp=2)
    # Inversion alone: the same file read as MONOCHROME2 is the exact complement.
    ds.PhotometricInterpretation = "MONOCHROME2"
    np.testing.assert_allclose(decode(ds) + got, 1.0, rtol=0, atol=1e-6)


def test_ct_rescale_to_hounsfield_without_window_scales_by_the_image_range() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert float(ds.RescaleIntercept) == -1024 and "WindowCenter" not in ds
    expected = ((hu - hu.min()) / (hu.max() - hu.min())).astype(np.float32)
    np.testing.assert_array_equal(decode(ds), expected)


def test_mr_window_uses_the_signed_stored_range() -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    lo, hi = voi_output_range(ds)
    assert (lo, hi) == (-32768.0, 32767.0)
    windowed = _window(ds.pixel_array.astype(np.float64), 600.0, 1600.0, lo, hi)
    np.testing.assert_allclose(decode(ds), (windowed - lo) / (hi - lo), rtol=0, atol=1e-6)
    # Without the VOI step the image's own range is used.
    raw = ds.pixel_array.astype(np.float64)
    np.testing.assert_allclose(
        decode(ds, DecodeSettings(apply_voi=False)), (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6
    )


def test_rgb_secondary_capture_scales_by_bit_depth() -> None:
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_small_odd.dcm"))
    got = decode(ds)
    assert got.shape == (3, 3, 3)
    np.testing.assert_array_equal(got, (ds.pixel_array / 255.0).astype(np.float32))


@pytest.mark.skipif(
    importlib.util.find_spec("data_store") is None,
    reason="pydicom-data 1.0.0 (RG1_UNCR.dcm, a real PA chest radiograph) is not installed",
)
def test_real_chest_radiograph_rg1_uncr_is_inverted_and_in_range() -> None:
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm", download=False))
    assert ds.PhotometricInterpretation == "MONOCHROME1" and (ds.Rows, ds.Columns) == (1955, 1841)
    got = decode(ds)
    ds.PhotometricInterpretation = "MONOCHROME2"
    np.testing.assert_allclose(decode(ds) + got, 1.0, atol=1e-6)
    assert got.shape == (1955, 1841) and 0.0 <= got.min() < got.max() <= 1.0
