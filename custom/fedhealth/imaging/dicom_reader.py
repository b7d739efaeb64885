"""Decoding one DICOM image into display values in [0, 1], as a radiologist's viewer would show it.

The DICOM grayscale pipeline (PS3.4 Grayscale Standard Display Function chain): stored values ->
Modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence) -> VOI LUT (a VOI LUT Sequence or
the first Window Center/Width) -> MONOCHROME1 inversion (for MONOCHROME1, low values are white).
pydicom's ``apply_modality_lut`` and ``apply_voi_lut`` do the first two steps; this module scales the
result by the VOI output range (the same range pydicom's windowing maps to), so the values mean the
same at every site and every scanner. Colour images (RGB, YBR) come back as RGB in [0, 1].

Compressed pixel data is decoded by pydicom's plug-ins, installed with the kit (``pyproject.toml``):
pylibjpeg-libjpeg (JPEG baseline, extended, lossless; JPEG-LS lossless and near-lossless),
pylibjpeg-openjpeg (JPEG 2000 lossless and lossy, HTJ2K) and pylibjpeg-rle (RLE Lossless). A PACS
export sometimes drops the 128-byte preamble and ``DICM`` prefix: :func:`read_dataset` reads such a
file when it still names a SOP class, so text and garbage stay unreadable.

pydicom warns, and logs, with the offending value quoted (``Invalid value for VR UI: '...'``); the
kit reads a site's files inside :func:`quiet_pydicom`, so no attribute value reaches a log.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
# The defined terms of Photometric Interpretation (PS3.3 C.7.6.3.1.2): a message may name these.
PHOTOMETRIC_TERMS = (
    *GRAYSCALE,
    "PALETTE COLOR",
    "RGB",
    "HSV",
    "ARGB",
    "CMYK",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_422",
    "YBR_PARTIAL_420",
    "YBR_ICT",
    "YBR_RCT",
    "XYZ",
)


class DecodeError(ValueError):
    """The image cannot be decoded; the message names attributes and counts, never an attribute's value."""


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and logger, which quote attribute values, while reading a site's files."""
    logger = logging.getLogger("pydicom")
    disabled = logger.disabled
    logger.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.disabled = disabled


@dataclass(frozen=True)
class DecodeSettings:
    """How stored pixels become model input values; part of the cache key and the provenance record.

    Args:
        apply_voi: apply the file's VOI LUT / window when it has one (else scale by the image's range).
        voi_index: which of several windows to use.
    """

    apply_voi: bool = True
    voi_index: int = 0

    def as_dict(self) -> dict:
        return {"apply_voi": self.apply_voi, "voi_index": self.voi_index}


def read_dataset(path: Path) -> Dataset:
    """Read one file; one without the preamble and ``DICM`` prefix is read when it names a SOP class.

    pydicom's strict read comes first. A file it refuses for a missing ``DICM`` prefix is read again
    with ``force=True`` (the file meta group, or a bare data set, from byte 0) and kept only when it
    names a SOP class (Media Storage SOP Class UID or SOP Class UID): text and random bytes parse
    into a data set of one meaningless element and name none. A bare data set has no Transfer Syntax
    UID; its encoding (implicit/explicit VR, byte order) as pydicom found it is recorded as one, so
    native pixel data decodes.

    Raises:
        InvalidDicomError: not a DICOM file (the message names no value).
    """
    try:
        return pydicom.dcmread(str(path))
    except InvalidDicomError:
        pass
    ds = pydicom.dcmread(str(path), force=True)
    meta = ds.file_meta
    if not (meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")):
        raise InvalidDicomError("not a DICOM file (no 'DICM' prefix, and no SOP Class UID without it)")
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        meta.TransferSyntaxUID = syntax if little else ExplicitVRBigEndian
    return ds


def decoder_installed(syntax: UID | str | None) -> bool:
    """Whether pydicom has a decoder plug-in installed for the transfer syntax (native ones: always)."""
    if syntax is None:
        return False
    try:
        return bool(get_decoder(UID(str(syntax))).is_available)
    except NotImplementedError:  # pydicom knows no decoder for this syntax at all (video, JPIP, ...)
        return False


def frame_count(ds: Dataset) -> int:
    """The image's Number of Frames (1 when absent).

    Raises:
        DecodeError: the attribute is not a whole number.
    """
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise DecodeError("the Number of Frames attribute is not a whole number") from exc


def has_voi(ds: Dataset) -> bool:
    """Whether the dataset carries a VOI LUT Sequence or a window."""
    return "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)


def voi_output_range(ds: Dataset) -> tuple[float, float]:
    """The value range a VOI transform maps to (PS3.3 C.11.2.1.2; pydicom's ``apply_windowing``).

    A VOI LUT Sequence maps to ``[0, 2**bits - 1]`` of its descriptor; a window maps to the range of
    the modality output: the stored range (unsigned or signed ``BitsStored``), rescaled when the file
    has a Rescale Slope and Intercept, or ``[0, 2**bits - 1]`` of a Modality LUT Sequence.
    """
    if "VOILUTSequence" in ds and not ("WindowCenter" in ds and "WindowWidth" in ds):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        lo, hi = 0.0, float(2**bits - 1)
    elif int(ds.PixelRepresentation) == 0:
        lo, hi = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        lo, hi = float(-(2 ** (int(ds.BitsStored) - 1))), float(2 ** (int(ds.BitsStored) - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return lo, hi


def decode(ds: Dataset, settings: DecodeSettings | None = None) -> np.ndarray:
    """Display values of one single-frame image: ``(H, W)`` grayscale or ``(H, W, 3)`` RGB, in [0, 1].

    Raises:
        DecodeError: the image is multi-frame, or its photometric interpretation is not supported.
        Exceptions of pydicom's pixel decoding (e.g. ``RuntimeError`` when no decoder is installed
        for the transfer syntax) pass through: the quarantine names their type.
    """
    settings = settings or DecodeSettings()
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    frames = frame_count(ds)
    if frames > 1:
        raise DecodeError(f"multi-frame image ({frames} frames); one image per file is expected")
    arr = ds.pixel_array
    if photometric not in GRAYSCALE:
        if arr.ndim != 3 or arr.shape[-1] != 3:
            shown = repr(photometric) if photometric in PHOTOMETRIC_TERMS else "(not a defined term)"
            raise DecodeError(f"photometric interpretation {shown} is not supported")
        # pydicom returns RGB for RGB and (by default) for YBR; scale by the stored bit depth.
        return (arr.astype(np.float64) / (2 ** int(ds.BitsStored) - 1)).astype(np.float32)
    values = apply_modality_lut(arr, ds).astype(np.float64)
    if settings.apply_voi and has_voi(ds):
        values = apply_voi_lut(values, ds, index=settings.voi_index)
        lo, hi = voi_output_range(ds)
    else:
        lo, hi = float(values.min()), float(values.max())
    scaled = np.clip((values - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(values)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


def read_dicom(path: Path, settings: DecodeSettings | None = None) -> tuple[Dataset, np.ndarray]:
    """Read and decode one file; returns the dataset and its display values (see :func:`decode`)."""
    with quiet_pydicom():
        ds = read_dataset(path)
        return ds, decode(ds, settings)
