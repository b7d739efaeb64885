"""MedMNIST ``.npz`` -> per-site folders of real DICOM files and label tables, split non-IID.

Each image becomes a DICOM object with its own Study, Series and SOP Instance UIDs
(``pydicom.uid.generate_uid``, seeded so a conversion is reproducible), of the modality the set is
(:mod:`fedhealth_tools.imaging.medmnist_sets`): chest radiographs as DX (Digital X-Ray, For
Presentation), every other set as Secondary Capture with its source modality (US, CT, OP, XC, ...);
grayscale with 12 stored bits, Rescale Slope/Intercept, a window and Pixel Spacing, colour as RGB.
Each split's ``labels.csv`` holds the set's stored labels and a ``classes.json`` beside it says what
they mean (class names, positive class). The split across sites is non-IID in
two ways: label skew, each class spread over the sites by Dirichlet(α) proportions (Hsu et al. 2019,
"Measuring the Effects of Non-Identical Data Distribution"), and a per-site "scanner": gain, offset
and gamma on the intensities, its own rescale and, for some sites, MONOCHROME1 storage, which the
reader's modality LUT, window and inversion must undo. No identifying attribute is filled in.
"""

from __future__ import annotations

import hashlib
import json
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

from fedhealth.imaging.labels import write_classes, write_labels
from fedhealth.imaging.site import CXR_DATASET_DIR, LABELS_FILE, SPLITS
from fedhealth.tasks.imaging import ImagingTask
from fedhealth_tools.imaging.medmnist_sets import MedmnistSet, medmnist_set, set_name

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "data" / "medmnist"  # shipped in the package
# name -> the official MD5 (medmnist's INFO table) of the files shipped in BUNDLED_DIR
BUNDLED_MD5 = {"pneumoniamnist": "28209eda62fecd6e6a2d98b1501bb15f"}
BITS_STORED = 12
FIELD_OF_VIEW_MM = {1: 350.0, 3: 12.0}  # a chest film; a fundus photograph
MANIFEST_FILE = "manifest.json"
DEFAULT_MIN_IMAGES = ImagingTask.min_images  # the imaging jobs' default (job_specs/cxr.json: 10)


def how_to_get(name: str) -> str:
    """How to get a MedMNIST v2 file that is not bundled (nothing is downloaded at run time)."""
    return (
        f'Get {name}.npz with the medmnist package (pip install medmnist; python -c "import medmnist as m; '
        f"getattr(m, m.INFO['{name}']['python_class'])(split='test', download=True, root='.')\") or from "
        f"Zenodo (https://zenodo.org/records/10519652/files/{name}.npz), check its MD5 against "
        f"medmnist.INFO['{name}']['MD5'] and the set's licence, then pass its path with --npz"
    )


def medmnist_file(name: str) -> Path:
    """The bundled MedMNIST v2 file ``<name>.npz``, once its MD5 matches the official one.

    Only ``pneumoniamnist`` ships with the package (``fedhealth_tools/data/medmnist``, CC BY 4.0);
    any other set is a file the user passes by path.

    Raises:
        ValueError: ``name`` is not bundled (the message says how to get it), or the bundled file's
            checksum is not the official one.
    """
    if name not in BUNDLED_MD5:
        raise ValueError(f"{name}.npz is not bundled (only {', '.join(BUNDLED_MD5)} is). {how_to_get(name)}.")
    return verified(BUNDLED_DIR / f"{name}.npz", BUNDLED_MD5[name])


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


def to_dicom(
    image: np.ndarray, profile: ScannerProfile, uid_seed: list[str], kind: MedmnistSet | None = None
) -> Dataset:
    """One uint8 image (``(H, W)`` or ``(H, W, 3)``) as a DICOM dataset through the site's scanner.

    ``kind`` gives the modality and SOP class; without it grayscale is DX and colour Secondary Capture OT.
    """
    rgb = image.ndim == 3
    shifted = profile.apply(image.astype(np.float64) / 255.0)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop_class = SecondaryCaptureImageStorage if rgb else DigitalXRayImageStorageForPresentation
    sop_class = kind.sop_class_uid if kind is not None else sop_class
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=[*uid_seed, "sop"]
    )
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*uid_seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*uid_seed, "series"])
    ds.Modality = kind.modality if kind is not None else "OT" if rgb else "DX"
    ds.PatientName = ds.PatientID = ds.PatientBirthDate = ds.PatientSex = ""  # type 2: present, empty
    ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "MedMNIST v2 source images; converted without identifiers"
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns = image.shape[:2]
    spacing = FIELD_OF_VIEW_MM[3 if rgb else 1] / image.shape[0]
    ds.PixelSpacing = [f"{spacing:.4f}", f"{spacing:.4f}"]
    if sop_class == SecondaryCaptureImageStorage:
        ds.ConversionType = "WSD"  # workstation: a converted image
    if rgb:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = np.round(shifted * 255).astype(np.uint8).tobytes()
        return ds
    if sop_class == DigitalXRayImageStorageForPresentation:
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
    dataset: str | None = None,
    min_images: int = DEFAULT_MIN_IMAGES,
) -> dict:
    """Write ``<site root>/cxr/<split>/img_<n>.dcm``, ``labels.csv``, ``classes.json``; returns the manifest.

    Args:
        npz: a MedMNIST v2 file (``{train,val,test}_{images,labels}``).
        out: folder of the site folders (``out/<site>``) and ``manifest.json``.
        sites: site names.
        alpha: Dirichlet concentration of the label skew (small: strong skew).
        seed: seed of the split, the scanners and the UIDs.
        limit: keep at most this many images per split before splitting (small test sets).
        scanner_shift: give each site its own scanner profile (else identical sites).
        site_roots: where each site's data root is (default ``out/<site>``), e.g. a POC kit's ``data``.
        dataset: the MedMNIST name (default: from the file name) that picks modality and class names.
        min_images: the job's ``min_images``; a site's split with fewer images gets a warning in the
            manifest's ``warnings`` (site, split, count).
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
    kind = medmnist_set(dataset or set_name(npz), int(np.concatenate(list(labels.values())).max()) + 1)
    spec = kind.spec
    parts = dirichlet_split(labels, len(sites), alpha, rng)
    profiles = scanner_profiles(len(sites), seed, scanner_shift)
    out = Path(out)
    manifest = {
        "source": Path(npz).name,
        "dataset": kind.name,
        "modality": kind.modality,
        "sop_class": kind.sop_class,
        "alpha": alpha,
        "seed": seed,
        "label_task": spec.task,
        "classes": list(spec.binary_names if spec.task == "binary" else spec.classes),
        "positive_class": spec.positive if spec.task == "binary" else None,
        "channels": 3 if images["train"].ndim == 4 else 1,
        "min_images": min_images,
        "sites": {},
        "warnings": [] if kind.known else [f"{kind.name} is not in the table of MedMNIST sets: OT, no names"],
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
                seeds = [Path(npz).name, str(seed), split, str(source)]
                ds = to_dicom(images[split][i], profiles[s], seeds, kind)
                ds.save_as(folder / name, enforce_file_format=True)
                names.append(name)
            y = labels[split][parts[split][s]]
            as_read = (y == spec.positive_index).astype(int) if spec.task == "binary" else y  # 1 = positive
            write_labels(folder / LABELS_FILE, names, as_read, spec)
            write_classes(folder, spec)
            counts[split] = {
                "n": len(names),
                "per_class": np.bincount(y, minlength=len(manifest["classes"])).tolist(),
            }
            if len(names) < min_images:
                manifest["warnings"].append(
                    f"site {site} {split}: {len(names)} image(s), fewer than min_images {min_images}: "
                    "the site will refuse the job (convert more images, fewer sites or a larger alpha)"
                )
        manifest["sites"][site] = {"root": str(root), "counts": counts, "scanner": asdict(profiles[s])}
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def count_lines(manifest: dict) -> list[str]:
    """Per site and split, each class's image count by name: ``site_a train: normal 110, pneumonia 12``."""
    names = manifest["classes"]
    return [
        f"{site} {split}: " + ", ".join(f"{c} {n}" for c, n in zip(names, counts["per_class"], strict=True))
        for site, info in manifest["sites"].items()
        for split, counts in info["counts"].items()
    ]
