"""Non-IID partitions for benchmarks: Dirichlet label skew, quantity skew and scanner-like feature
shift, with the per-site label and size table.

Label skew follows Hsu et al. 2019 ("Measuring the Effects of Non-Identical Data Distribution for
Federated Visual Classification"): each class's rows are dealt to the sites in proportions drawn
from ``Dir(alpha)``; small ``alpha`` gives sites dominated by one class, large ``alpha`` nearly IID.
Quantity skew draws the site sizes from ``Dir(beta)`` (Li et al. 2022, "Federated Learning on
Non-IID Data Silos: An Experimental Study"). Feature shift gives every site its own intensity
offset, contrast and noise, like different scanners or protocols (as in FedBN, Li et al. 2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _check(n_sites: int, concentration: float, name: str) -> None:
    if n_sites < 1:
        raise ValueError(f"Need at least one site, got n_sites={n_sites}.")
    if concentration <= 0:
        raise ValueError(f"{name} must be positive, got {concentration}.")


def dirichlet_label_split(
    labels: np.ndarray, *, n_sites: int, alpha: float, seed: int = 0, min_size: int = 1, max_tries: int = 100
) -> list[np.ndarray]:
    """Row indices of each site: every class is split over the sites by ``Dir(alpha)`` proportions.

    Redraws until every site holds at least ``min_size`` rows.

    Raises:
        ValueError: on bad arguments, or when ``max_tries`` draws all leave a site too small.
    """
    _check(n_sites, alpha, "alpha")
    labels = np.asarray(labels).ravel()
    if len(labels) < n_sites * min_size:
        raise ValueError(f"{len(labels)} rows cannot give {n_sites} sites {min_size} rows each.")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(n_sites)]
        for value in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == value))
            cuts = (np.cumsum(rng.dirichlet(np.full(n_sites, alpha))) * len(rows)).astype(int)[:-1]
            for site, chunk in enumerate(np.split(rows, cuts)):
                parts[site] += chunk.tolist()
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=int)) for p in parts]
    raise ValueError(
        f"No Dir({alpha}) split in {max_tries} draws gave every site {min_size} rows; lower min_size."
    )


def quantity_skew_split(
    n: int, *, n_sites: int, beta: float, seed: int = 0, min_size: int = 1
) -> list[np.ndarray]:
    """Row indices of each site with sizes drawn from ``Dir(beta)``, labels dealt at random.

    Raises:
        ValueError: on bad arguments or fewer than ``n_sites * min_size`` rows.
    """
    _check(n_sites, beta, "beta")
    if n < n_sites * min_size:
        raise ValueError(f"{n} rows cannot give {n_sites} sites {min_size} rows each.")
    rng = np.random.default_rng(seed)
    spare = n - n_sites * min_size
    sizes = min_size + np.floor(rng.dirichlet(np.full(n_sites, beta)) * spare).astype(int)
    sizes[np.argmax(sizes)] += n - sizes.sum()
    rows = rng.permutation(n)
    return [np.sort(part) for part in np.split(rows, np.cumsum(sizes)[:-1])]


@dataclass(frozen=True)
class ScannerShift:
    """One site's image shift: ``x' = clip((x - 0.5) * contrast + 0.5 + intensity + noise, 0, 1)``."""

    intensity: float = 0.0
    contrast: float = 1.0
    noise_sd: float = 0.0

    def __post_init__(self) -> None:
        if self.contrast <= 0 or self.noise_sd < 0:
            raise ValueError(f"contrast must be positive and noise_sd non-negative, got {self}.")

    def apply(self, images: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """Shift images with values in [0, 1] (any shape); returns float32 in [0, 1]."""
        x = np.asarray(images, dtype="float32")
        if x.size and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                "ScannerShift expects images scaled to [0, 1]; divide uint8 images by 255 first."
            )
        noise = np.random.default_rng(seed).normal(0.0, self.noise_sd, x.shape) if self.noise_sd else 0.0
        return np.clip((x - 0.5) * self.contrast + 0.5 + self.intensity + noise, 0.0, 1.0).astype("float32")


def scanner_shifts(n_sites: int, *, strength: float, seed: int = 0) -> list[ScannerShift]:
    """Random per-site shifts: intensity ±0.2·s, contrast ×(1 ± 0.5·s), noise sd up to 0.1·s."""
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1], got {strength}.")
    rng = np.random.default_rng(seed)
    return [
        ScannerShift(
            intensity=float(rng.uniform(-0.2, 0.2) * strength),
            contrast=float(1 + rng.uniform(-0.5, 0.5) * strength),
            noise_sd=float(rng.uniform(0, 0.1) * strength),
        )
        for _ in range(n_sites)
    ]


def label_table(
    labels: np.ndarray, parts: Sequence[np.ndarray], names: Sequence[str] | None = None
) -> list[dict]:
    """Per site: ``site``, ``n`` and the count of every class (all classes of ``labels`` listed)."""
    labels = np.asarray(labels).ravel()
    classes = np.unique(labels)
    names = list(names) if names is not None else [f"site-{i + 1}" for i in range(len(parts))]
    return [
        {"site": name, "n": int(len(part)), **{str(c): int((labels[part] == c).sum()) for c in classes}}
        for name, part in zip(names, parts, strict=True)
    ]


def format_table(rows: Sequence[dict]) -> str:
    """The per-site label/size table as aligned text (what the benchmark prints)."""
    if not rows:
        return ""
    columns = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.rjust(width[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).rjust(width[c]) for c in columns) for r in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class ImageSite:
    """One benchmark site's images (float32 in [0, 1], its scanner shift applied) and labels."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    shift: ScannerShift


def partition_images(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_sites: int,
    alpha: float,
    shift_strength: float = 0.0,
    seed: int = 0,
    min_size: int = 10,
) -> list[ImageSite]:
    """Split an image set over ``n_sites`` by ``Dir(alpha)`` label skew, each site with its own scanner.

    Args:
        images: ``uint8`` images (0-255) or floats in [0, 1], first axis the sample.
        labels: class per image (``(n,)`` or MedMNIST's ``(n, 1)``).
        n_sites: number of sites.
        alpha: Dirichlet concentration of the label skew.
        shift_strength: 0 (no feature shift) to 1 (strong) for :func:`scanner_shifts`.
        seed: seeds the split, the shifts and the noise.
        min_size: fewest images a site may hold.
    """
    y = np.asarray(labels).reshape(len(labels), -1)[:, 0]
    x = np.asarray(images)
    x = x.astype("float32") / 255.0 if x.dtype == np.uint8 else x.astype("float32")
    parts = dirichlet_label_split(y, n_sites=n_sites, alpha=alpha, seed=seed, min_size=min_size)
    shifts = scanner_shifts(n_sites, strength=shift_strength, seed=seed + 1)
    return [
        ImageSite(f"site-{i + 1}", shift.apply(x[part], seed=seed * 1000 + i), y[part], shift)
        for i, (part, shift) in enumerate(zip(parts, shifts, strict=True))
    ]


def image_site_table(sites: Sequence[ImageSite]) -> list[dict]:
    """Per site: size, class counts and its scanner shift (what the benchmark prints)."""
    labels = np.concatenate([s.labels for s in sites])
    offsets = np.cumsum([0, *(len(s.labels) for s in sites)])
    rows = label_table(
        labels,
        [np.arange(a, b) for a, b in zip(offsets[:-1], offsets[1:], strict=True)],
        [s.name for s in sites],
    )
    for row, site in zip(rows, sites, strict=True):
        row.update(
            intensity=f"{site.shift.intensity:+.3f}",
            contrast=f"{site.shift.contrast:.3f}",
            noise=f"{site.shift.noise_sd:.3f}",
        )
    return rows


if __name__ == "__main__":  # python -m fedhealth_tools.algorithms.partition FILE.npz ALPHA [SITES] [STRENGTH]
    import sys

    data = np.load(sys.argv[1])
    sites = partition_images(
        data["train_images"],
        data["train_labels"],
        n_sites=int(sys.argv[3]) if len(sys.argv) > 3 else 4,
        alpha=float(sys.argv[2]),
        shift_strength=float(sys.argv[4]) if len(sys.argv) > 4 else 0.5,
    )
    print(format_table(image_site_table(sites)))
