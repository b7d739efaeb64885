"""Loading one site's labelled DICOM split: scan, quarantine, PHI audit, cache, preprocess, label.

A site keeps ``<data_root>/cxr/<split>/`` (``train``, ``val``, ``test``) with its DICOM files in any
folder structure and a ``labels.csv`` (see :mod:`fedhealth.imaging.labels`). The data root is the
site's own setting (``local/fedhealth_site.json``), as for the heart sites.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedhealth.data.messages import SiteDataError
from fedhealth.imaging.cache import DecodedCache, file_sha256
from fedhealth.imaging.dicom_reader import DecodeSettings, quiet_pydicom
from fedhealth.imaging.labels import FILE_KEY, LABELS_FILE, SPLIT_FOLDERS, LabelSpec, read_labels
from fedhealth.imaging.phi_audit import identifying_tags, phi_summary, require_deidentified
from fedhealth.imaging.quarantine import (
    NO_LABEL,
    UNREADABLE,
    QuarantineEntry,
    QuarantineReport,
    candidate_files,
    check_file,
    require_min_images,
)
from fedhealth.imaging.transforms import prepare, preprocess_settings

CXR_DATASET_DIR = "cxr"
SPLITS = SPLIT_FOLDERS


@dataclass(frozen=True)
class PipelineSettings:
    """How a site turns its files into model inputs.

    Args:
        size: side of the square model input.
        channels: model input channels (1 for X-rays, 3 for RGB).
        intensity: ``zscore`` (per image, the default) or ``none`` (display values in [0, 1]).
        decode: the DICOM decode settings.
        min_images: fewest usable images a split may have.
        require_deidentified: refuse files that carry identifying attributes (the site's setting).
    """

    size: int = 28
    channels: int = 1
    intensity: str = "zscore"
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    min_images: int = 1
    require_deidentified: bool = True

    def __post_init__(self) -> None:
        preprocess_settings(self.size, self.channels, self.intensity)
        if self.min_images < 1:
            raise ValueError(f"min_images must be at least 1, got {self.min_images}.")

    def cache_settings(self) -> dict:
        return {
            **preprocess_settings(self.size, self.channels, self.intensity),
            "decode": self.decode.as_dict(),
        }


@dataclass
class ImageSplit:
    """One split's model inputs ``x`` ``(n, C, S, S)``, labels ``y``, and what the scan found."""

    x: np.ndarray
    y: np.ndarray
    quarantine: QuarantineReport
    phi: dict
    seconds: float
    cache_hits: int = 0

    def __len__(self) -> int:
        return len(self.y)


def load_split(
    folder: Path,
    spec: LabelSpec,
    settings: PipelineSettings,
    *,
    cache: DecodedCache | None = None,
    labels_path: Path | None = None,
    where: str | None = None,
) -> ImageSplit:
    """Scan ``folder`` recursively and return its labelled, preprocessed images.

    ``labels_path`` is the label table (default: ``folder/labels.csv``); ``where`` names the folder in
    the too-few-images error (default: ``split '<folder name>'``).

    Raises:
        LabelError: the label table is unusable.
        PhiError: the site requires de-identified data and some files are not.
        TooFewImagesError: fewer than ``settings.min_images`` usable, labelled images.
    """
    start = time.perf_counter()
    folder = Path(folder)
    key_column, labels = read_labels(labels_path or folder / LABELS_FILE, spec)
    report = QuarantineReport()
    images, targets, tag_lists = [], [], []
    hits = 0
    for path in candidate_files(folder):
        rel = str(path.relative_to(folder))
        try:
            sha = file_sha256(path) if cache is not None else ""
        except OSError as exc:  # unreadable for the user FLARE runs as; its message carries the path
            report.entries.append(
                QuarantineEntry(rel, UNREADABLE, f"the file cannot be opened ({type(exc).__name__})")
            )
            continue
        item = cache.get(sha) if cache is not None else None
        if item is None:
            check = check_file(path, folder, settings.decode)
            if check.entry is not None:
                report.entries.append(check.entry)
                continue
            image = prepare(check.pixels, settings.size, settings.channels, settings.intensity)
            with quiet_pydicom():  # reading an attribute converts it, and pydicom warns quoting it
                meta = {
                    "sop_instance_uid": str(check.dataset.get("SOPInstanceUID", "")),
                    "phi": identifying_tags(check.dataset),
                }
            if cache is not None:
                cache.put(sha, image, meta)
        else:
            image, meta = item
            hits += 1
        tag_lists.append(meta["phi"])
        label_key = meta["sop_instance_uid"] if key_column != FILE_KEY else _file_key(rel, labels)
        if label_key not in labels:
            report.entries.append(QuarantineEntry(rel, NO_LABEL, f"not listed in {LABELS_FILE}"))
            continue
        images.append(image)
        targets.append(labels[label_key])
    if cache is not None:
        cache.flush()
    phi = phi_summary(tag_lists)
    if settings.require_deidentified:
        require_deidentified(phi)
    require_min_images(len(images), report, settings.min_images, where or f"split {folder.name!r}")
    x = np.stack(images).astype(np.float32)
    return ImageSplit(x, np.stack(targets), report, phi, time.perf_counter() - start, hits)


def _file_key(rel: str, labels: dict) -> str:
    """A row may name the file by its path relative to the split folder or by its name alone."""
    return rel if rel in labels else Path(rel).name


def load_site_images(
    data_root: Path,
    spec: LabelSpec,
    settings: PipelineSettings,
    *,
    splits=SPLITS,
    cache_root: Path | None = None,
    folder: str = CXR_DATASET_DIR,
) -> dict[str, ImageSplit]:
    """All splits of a site (``<data_root>/cxr/<split>``).

    Raises:
        SiteDataError: a split folder is missing (named by the kit's own folder names), or any error
            of :func:`load_split` (its subclasses :class:`~fedhealth.imaging.labels.LabelError`,
            :class:`~fedhealth.imaging.phi_audit.PhiError`,
            :class:`~fedhealth.imaging.quarantine.TooFewImagesError`).
    """
    base = Path(data_root) / folder
    cache = DecodedCache(cache_root, settings.cache_settings()) if cache_root is not None else None
    out = {}
    for split in splits:
        split_dir = base / split
        if not split_dir.is_dir():
            raise SiteDataError(f"image folder {folder}/{split} is missing at this site")
        out[split] = load_split(split_dir, spec, settings, cache=cache)
    return out
