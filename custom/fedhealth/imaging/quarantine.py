"""Scanning a site's DICOM folder: every file is either a usable image or a quarantine entry with its reason.

A site's folder holds what its PACS export produced: good images, and sometimes a file cut short in
transfer, an empty file, an object with no pixels, a compressed image no installed decoder can open,
a multi-frame object, a structured report or an RT plan, or something that is not DICOM at all. Each
such file goes to the quarantine report with one of the reasons below; training goes on with the
valid files. Only when fewer than ``min_images`` remain does the scan fail, with a message that gives
the counts per reason.

Compressed images (JPEG, JPEG-LS, JPEG 2000, RLE) are decoded by the pylibjpeg plug-ins the kit
installs; ``unsupported_transfer_syntax`` is left for syntaxes no installed plug-in decodes (video,
JPIP, JPEG 2000 Part 2 multi-component). A file without the 128-byte preamble is read when it still
names a SOP class (:func:`~fedhealth.imaging.dicom_reader.read_dataset`).

A multi-frame object (a CT or MR volume, a tomosynthesis or cine series, an enhanced multi-frame
image) is quarantined as ``multi_frame`` with its frame count, not split into frames: the kit's
classifiers take one 2-D radiograph per file, and a volume's slices are neither radiographs nor
independent samples (one label per file would be copied to every slice, and a split by file would
put slices of one patient on both sides). The site sees the frame count and can export the
projection it means to train on.

Nothing here logs or quotes a patient value: a reason's detail names DICOM attributes, registered
SOP classes and transfer syntaxes, byte counts and tags, never an attribute's value or a library's
message (which may quote one). The report names each file relative to the site's own folder (the
site needs to know which file to fix), so it stays at the site, in its run folder; only the counts
per reason leave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, UID_dictionary

from fedhealth.data.messages import SiteDataError
from fedhealth.imaging.dicom_reader import (
    DecodeError,
    DecodeSettings,
    decode,
    decoder_installed,
    frame_count,
    quiet_pydicom,
    read_dataset,
)

TRUNCATED = "truncated"
EMPTY_FILE = "empty_file"
MULTI_FRAME = "multi_frame"
NO_PIXEL_DATA = "no_pixel_data"
UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
NON_IMAGE_OBJECT = "non_image_object"
UNREADABLE = "unreadable"
UNSUPPORTED_IMAGE = "unsupported_image"
NO_LABEL = "no_label"  # a valid image that the site's label table does not list
REASONS = (
    TRUNCATED,
    EMPTY_FILE,
    NO_PIXEL_DATA,
    UNSUPPORTED_TRANSFER_SYNTAX,
    MULTI_FRAME,
    NON_IMAGE_OBJECT,
    UNREADABLE,
    UNSUPPORTED_IMAGE,
    NO_LABEL,
)
SKIPPED_SUFFIXES = (".csv", ".json", ".md", ".txt", ".npz")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
UNDEFINED_LENGTH = 0xFFFFFFFF


class TooFewImagesError(SiteDataError):
    """Fewer valid images than the site's minimum remain after quarantine."""


@dataclass(frozen=True)
class QuarantineEntry:
    """One file left out of training, and why."""

    file: str
    reason: str
    detail: str


@dataclass
class FileCheck:
    """The outcome for one file: the dataset and display values, or a quarantine entry."""

    dataset: Dataset | None = None
    pixels: np.ndarray | None = None
    entry: QuarantineEntry | None = None


@dataclass
class QuarantineReport:
    """All quarantine entries of a scan, with counts per reason."""

    entries: list[QuarantineEntry] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {reason: 0 for reason in REASONS}
        for entry in self.entries:
            out[entry.reason] += 1
        return {k: v for k, v in out.items() if v}

    def as_dict(self) -> dict:
        return {
            "n_quarantined": len(self.entries),
            "counts": self.counts(),
            "files": [{"file": e.file, "reason": e.reason, "detail": e.detail} for e in self.entries],
        }


def candidate_files(root: Path) -> list[Path]:
    """Every file under ``root``, recursively, except hidden files and the site's tables and notes."""
    root = Path(root)
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.suffix.lower() not in SKIPPED_SUFFIXES
    )


def registered_name(uid: UID | str | None) -> str:
    """A UID's registered DICOM name (``'JPEG-LS Lossless Image Compression'``), never an unknown value."""
    if uid is not None and str(uid) in UID_dictionary:
        return repr(UID(str(uid)).name)
    return "(unregistered, UID not shown)"


def _is_image_sop(ds: Dataset) -> bool | None:
    """True for an image storage SOP class, False for another object, None when the file names none."""
    uid = ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    if uid is None:
        return None
    return "Image" in uid.name


def _truncated(ds: Dataset, size: int) -> str | None:
    """Whether the last element read runs past, or stops short of, the end of the file."""
    tags = list(ds.keys())
    if not tags:
        return None
    raw = ds.get_item(tags[-1])
    tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if tell is None or length is None or length == UNDEFINED_LENGTH:
        return None
    end = tell + length
    if end > size:
        return f"the file ends {end - size} bytes inside element {tags[-1]}"
    if 0 < size - end < 8:  # too short for another element header
        return f"{size - end} stray bytes after the last complete element"
    return None


def check_file(path: Path, root: Path, settings: DecodeSettings | None = None) -> FileCheck:
    """Read and decode one file; any failure becomes a quarantine entry with its reason."""
    rel = str(Path(path).relative_to(root))

    def quarantine(reason: str, detail: str) -> FileCheck:
        return FileCheck(entry=QuarantineEntry(rel, reason, detail))

    with quiet_pydicom():
        return _check(Path(path), quarantine, settings)


def _check(path: Path, quarantine, settings: DecodeSettings | None) -> FileCheck:
    size = path.stat().st_size
    if size == 0:
        return quarantine(EMPTY_FILE, "the file is empty (0 bytes)")
    try:
        ds = read_dataset(path)
    except InvalidDicomError:
        return quarantine(UNREADABLE, "not a DICOM file (no 'DICM' prefix, and no SOP class without it)")
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on a corrupt header
        return quarantine(UNREADABLE, f"the header cannot be parsed ({type(exc).__name__})")
    cut = _truncated(ds, size)
    if cut:
        return quarantine(TRUNCATED, cut)
    is_image = _is_image_sop(ds)
    has_pixels = any(k in ds for k in PIXEL_KEYWORDS)
    if is_image is False:
        uid = ds.get("SOPClassUID") or ds.file_meta.MediaStorageSOPClassUID
        return quarantine(NON_IMAGE_OBJECT, f"SOP class {registered_name(uid)} is not an image")
    if not has_pixels:
        return quarantine(NO_PIXEL_DATA, "the object has no Pixel Data element")
    try:
        frames = frame_count(ds)
    except DecodeError as exc:
        return quarantine(UNSUPPORTED_IMAGE, str(exc))
    if frames > 1:
        return quarantine(MULTI_FRAME, f"{frames} frames; a 2-D classifier takes one image per file")
    return _decode(ds, quarantine, settings)


def _decode(ds: Dataset, quarantine, settings: DecodeSettings | None) -> FileCheck:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        pixels = decode(ds, settings)
    except (RuntimeError, NotImplementedError) as exc:
        if not decoder_installed(syntax):
            return quarantine(
                UNSUPPORTED_TRANSFER_SYNTAX,
                f"no installed decoder for transfer syntax {registered_name(syntax)}",
            )
        if syntax is not None and syntax.is_compressed:
            return quarantine(
                UNSUPPORTED_IMAGE,
                f"the installed decoders of transfer syntax {registered_name(syntax)} "
                f"cannot decode its pixel data ({type(exc).__name__})",
            )
        return quarantine(UNSUPPORTED_IMAGE, f"the pixel data cannot be decoded ({type(exc).__name__})")
    except DecodeError as exc:  # the kit's own message: attributes and counts only
        return quarantine(UNSUPPORTED_IMAGE, str(exc))
    except ValueError as exc:
        if "less than expected" in str(exc):
            return quarantine(TRUNCATED, "the pixel data is shorter than the image's size needs")
        return quarantine(UNSUPPORTED_IMAGE, f"the pixel data cannot be decoded ({type(exc).__name__})")
    except Exception as exc:  # noqa: BLE001 - a decoder failure must not stop the site
        return quarantine(UNSUPPORTED_IMAGE, f"{type(exc).__name__} while decoding")
    if not np.isfinite(pixels).all():
        return quarantine(UNSUPPORTED_IMAGE, "decoded values are not finite")
    return FileCheck(dataset=ds, pixels=pixels)


def require_min_images(n_valid: int, report: QuarantineReport, min_images: int, where: str) -> None:
    """Raise :class:`TooFewImagesError` with the counts per reason when too few images are usable."""
    if n_valid < min_images:
        counts = ", ".join(f"{k}: {v}" for k, v in report.counts().items()) or "none quarantined"
        raise TooFewImagesError(
            f"{where}: only {n_valid} usable DICOM images, fewer than the minimum of {min_images} "
            f"({len(report.entries)} files quarantined - {counts}); see the site's quarantine report"
        )
