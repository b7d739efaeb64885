"""MedMNIST ``.npz`` -> per-site folders of real DICOM files and label tables, split non-IID.

Each image becomes a DICOM object with its own Study, Series and SOP Instance UIDs
(``pydicom.uid.generate_uid``, seeded so a conversion is reproducible): grayscale images as DX
(Digital X-Ray, For Presentation) with 12 stored bits, Rescale Slope/Intercept, a window and Pixel
Spacing; colour images (RetinaMNIST) as Secondary Capture RGB. The split across sites is non-IID in
two ways: label skew, each class spread over the sites by Dirichlet(α) proportions (Hsu et al. 2019,
"Measuring the Effects of Non-Identical Data Distribution"), and a per-site "scanner": gain, offset
and gamma on the intensities, its own rescale and, for some sites, MONOCHROME1 storage, which the
reader's modality LUT, window and inversion must undo. No identifying attribute is filled in.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from fedhealth.imaging.labels import LabelSpec, write_labels
from fedhealth.imaging.site import CXR_DATASET_DIR, LABELS_FILE, SPLITS

SHARED_ENV = "FEDHEALTH_SHARED_DIR"  # holds ``data/medmnist`` of unbundled files; default ``../shared``
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "data" / "medmnist"  # shipped in the package
# name -> the official MD5 (medmnist's INFO table) of the files shipped in BUNDLED_DIR
BUNDLED_MD5 = {"pneumoniamnist": "28209eda62fecd6e6a2d98b1501bb15f"}
BITS_STORED = 12
FIELD_OF_VIEW_MM = {1: 350.0, 3: 12.0}  # a chest film; a fundus photograph
MANIFEST_FILE = "manifest.json"


def medmnist_file(name: str) -> Path:
    """The MedMNIST v2 file ``<name>.npz``: bundled (checksum verified) or from the shared folder.

    ``pneumoniamnist`` ships with the package (``fedhealth_tools/data/medmnist``, CC BY 4.0) and is
    returned once its MD5 matches the official one. Other names are looked up in
    ``$FEDHEALTH_SHARED_DIR/data/medmnist`` (default: ``../shared`` beside the checkout); that path may
    not exist, callers check.

    Raises:
        ValueError: the bundled file's checksum is not the official one.
    """
    if name in BUNDLED_MD5:
        return verified(BUNDLED_DIR / f"{name}.npz", BUNDLED_MD5[name])
    shared = os.environ.get(SHARED_ENV) or Path(__file__).resolve().parents[3].parent / "shared"
    return Path(shared) / "data" / "medmnist" / f"{name}.npz"


@cache
def verified(path: Path, md5: str) -> Path:
    """``path`` if its MD5 is ``md5`` (checked once per process).

    Raises:
        ValueError: the file is missing or its MD5 differs; the message names the file and both sums.
    """
    if not path.is_file():
        raise ValueError(f"{path} is missing: reinstall fedhealth-tools (it ships this MedMNIST file).")
    got = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    if got != md5:
        raise ValueError(
            f"{path} has MD5 {got}, not the official {md5}: the file was changed or truncated. "
            "Restore it (git checkout, or reinstall fedhealth-tools)."
        )
    return path


@dataclass(frozen=True)
class ScannerProfile:
    """A site's simulated scanner: display ``v -> clip(offset + gain * v**gamma)`` and its storage."""

    gain: float = 1.0
    offset: float = 0.0
    gamma: float = 1.0
    slope: float = 1.0
    intercept: float = 0.0
    monochrome1: bool = False

    def apply(self, v: np.ndarray) -> np.ndarray:
        return np.clip(self.offset + self.gain * np.power(v, self.gamma), 0.0, 1.0)


def scanner_profiles(n_sites: int, seed: int, shift: bool = True) -> list[ScannerProfile]:
    """Per-site scanners; ``shift=False`` gives every site the identity profile."""
    if not shift:
        return [ScannerProfile() for _ in range(n_sites)]
    rng = np.random.default_rng(seed + 1)
    return [
        ScannerProfile(
            gain=float(rng.uniform(0.8, 1.0)),
            offset=float(rng.uniform(0.0, 0.12)),
            gamma=float(np.exp(rng.normal(0.0, 0.2))),
            slope=(1.0, 0.5, 2.0, 1.0)[i % 4],
            intercept=(0.0, -1024.0, 0.0, 100.0)[i % 4],
            monochrome1=i % 2 == 1,
        )
        for i in range(n_sites)
    ]


def label_spec_for(labels: np.ndarray) -> LabelSpec:
    """Binary for two classes, else multi-class ``class_0 .. class_{K-1}``."""
    k = int(labels.max()) + 1
    return LabelSpec("binary") if k <= 2 else LabelSpec("multiclass", tuple(f"class_{i}" for i in range(k)))


def dirichlet_split(
    labels: dict[str, np.ndarray],
    n_sites: int,
    alpha: float,
    rng: np.random.Generator,
    min_per_class: int = 2,
) -> dict[str, list[np.ndarray]]:
    """Indices of each split for each site: class ``c`` spread by one Dirichlet(α) draw over all splits.

    The same proportions hold in train, val and test, so a site's test set looks like its training
    set. Draws that leave a site with fewer than ``min_per_class`` of a class in a split are redrawn.
    """
    if alpha <= 0 or n_sites < 1:
        raise ValueError(f"Need alpha > 0 and at least one site, got alpha={alpha}, sites={n_sites}.")
    classes = np.unique(np.concatenate(list(labels.values())))
    for _ in range(1000):
        props = {c: rng.dirichlet(alpha * np.ones(n_sites)) for c in classes}
        out = {split: [[] for _ in range(n_sites)] for split in labels}
        for split, y in labels.items():
            for c in classes:
                idx = rng.permutation(np.flatnonzero(y == c))
                cuts = (np.cumsum(props[c])[:-1] * len(idx)).round().astype(int)
                for site, part in enumerate(np.split(idx, cuts)):
                    out[split][site].append(part)
        ok = all(
            len(p) >= min(min_per_class, (y == c).sum() // n_sites)
            for split, y in labels.items()
            for parts in out[split]
            for p, c in zip(parts, classes, strict=True)
        )
        if ok:
            return {
                split: [np.sort(np.concatenate(parts)) for parts in sites] for split, sites in out.items()
            }
    raise ValueError(
        f"No Dirichlet(alpha={alpha}) split gives every site {min_per_class} images of each class."
    )


def to_dicom(image: np.ndarray, profile: ScannerProfile, uid_seed: list[str]) -> Dataset:
    """One uint8 image (``(H, W)`` or ``(H, W, 3)``) as a DICOM dataset through the site's scanner."""
    rgb = image.ndim == 3
    shifted = profile.apply(image.astype(np.float64) / 255.0)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop_class = SecondaryCaptureImageStorage if rgb else DigitalXRayImageStorageForPresentation
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=[*uid_seed, "sop"]
    )
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*uid_seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*uid_seed, "series"])
    ds.Modality = "OT" if rgb else "DX"
    ds.PatientName = ds.PatientID = ds.PatientBirthDate = ds.PatientSex = ""  # type 2: present, empty
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "MedMNIST v2 source images; converted without identifiers"
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns = image.shape[:2]
    spacing = FIELD_OF_VIEW_MM[3 if rgb else 1] / image.shape[0]
    ds.PixelSpacing = [f"{spacing:.4f}", f"{spacing:.4f}"]
    if rgb:
        ds.ConversionType = "WSD"
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = np.round(shifted * 255).astype(np.uint8).tobytes()
        return ds
    ds.ImagerPixelSpacing = ds.PixelSpacing
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if profile.monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, BITS_STORED, BITS_STORED - 1, 0
    top = 2**BITS_STORED - 1
    stored = np.round((1.0 - shifted if profile.monochrome1 else shifted) * top).astype(np.uint16)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = (
        f"{profile.slope:g}",
        f"{profile.intercept:g}",
        "US",
    )
    lo, hi = profile.intercept, profile.intercept + profile.slope * top  # the window spans the stored range
    ds.WindowCenter, ds.WindowWidth = f"{(lo + hi) / 2 + 0.5:g}", f"{hi - lo + 1:g}"
    ds.PixelData = stored.tobytes()
    return ds


def convert_medmnist(
    npz: Path,
    out: Path,
    *,
    sites: list[str],
    alpha: float = 0.5,
    seed: int = 0,
    limit: int | None = None,
    scanner_shift: bool = True,
    site_roots: dict[str, Path] | None = None,
) -> dict:
    """Write ``<site root>/cxr/<split>/img_<n>.dcm`` and ``labels.csv`` for each site; returns the manifest.

    Args:
        npz: a MedMNIST v2 file (``{train,val,test}_{images,labels}``).
        out: folder of the site folders (``out/<site>``) and ``manifest.json``.
        sites: site names.
        alpha: Dirichlet concentration of the label skew (small: strong skew).
        seed: seed of the split, the scanners and the UIDs.
        limit: keep at most this many images per split before splitting (small test sets).
        scanner_shift: give each site its own scanner profile (else identical sites).
        site_roots: where each site's data root is (default ``out/<site>``), e.g. a POC kit's ``data``.
    """
    data = np.load(npz)
    rng = np.random.default_rng(seed)
    images, labels, source_index = {}, {}, {}
    for split in SPLITS:
        x, y = data[f"{split}_images"], data[f"{split}_labels"].ravel().astype(np.int64)
        keep = np.arange(len(y))
        if limit is not None and len(y) > limit:
            keep = np.sort(rng.choice(len(y), size=limit, replace=False))
        images[split], labels[split], source_index[split] = x[keep], y[keep], keep
    spec = label_spec_for(np.concatenate(list(labels.values())))
    parts = dirichlet_split(labels, len(sites), alpha, rng)
    profiles = scanner_profiles(len(sites), seed, scanner_shift)
    out = Path(out)
    manifest = {
        "source": Path(npz).name,
        "alpha": alpha,
        "seed": seed,
        "label_task": spec.task,
        "classes": list(spec.classes),
        "channels": 3 if images["train"].ndim == 4 else 1,
        "sites": {},
    }
    for s, site in enumerate(sites):
        root = Path(site_roots[site]) if site_roots else out / site
        counts = {}
        for split in SPLITS:
            folder = root / CXR_DATASET_DIR / split
            folder.mkdir(parents=True, exist_ok=True)
            names = []
            for i in parts[split][s]:
                source = int(source_index[split][i])  # the image's index in the .npz split
                name = f"img_{split}_{source:05d}.dcm"
                ds = to_dicom(images[split][i], profiles[s], [Path(npz).name, str(seed), split, str(source)])
                ds.save_as(folder / name, enforce_file_format=True)
                names.append(name)
            y = labels[split][parts[split][s]]
            write_labels(folder / LABELS_FILE, names, y, spec)
            counts[split] = {
                "n": len(names),
                "per_class": np.bincount(y, minlength=max(2, len(spec.classes))).tolist(),
            }
        manifest["sites"][site] = {"root": str(root), "counts": counts, "scanner": asdict(profiles[s])}
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest
