"""Image sites for the non-IID twin: a Dirichlet + scanner-shift split with train/val/test per site.

:func:`split_image_sites` pools a MedMNIST set's official splits, deals them over the sites with
:func:`fedhealth_tools.algorithms.partition.partition_images` (Dirichlet label skew, Hsu et al. 2019, and a
simulated scanner per site), then splits each site's images stratified into train / validation /
test, so every site is scored on its own population and scanner. The sites are the imaging task's own
:class:`~fedhealth.tasks.imaging.ImageSite` s, so SCAFFOLD, FedOpt, Ditto and clustered FL run on them
through the one loop, as in a FLARE job.
"""

from __future__ import annotations

import numpy as np

from fedhealth.imaging.labels import LabelSpec
from fedhealth.tasks.imaging import ImageSite
from fedhealth_tools.algorithms.partition import partition_images

SPLITS = ("train", "val", "test")


def _stratified(y: np.ndarray, fractions: tuple[float, float], rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of train / val / test, each class cut by ``fractions`` (val, test) of its rows."""
    out: list[list[int]] = [[], [], []]
    for value in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == value))
        n_val, n_test = (int(round(f * len(rows))) for f in fractions)
        out[1] += rows[:n_val].tolist()
        out[2] += rows[n_val : n_val + n_test].tolist()
        out[0] += rows[n_val + n_test :].tolist()
    return [np.sort(np.asarray(o, dtype=int)) for o in out]


def split_image_sites(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    n_sites: int,
    alpha: float,
    shift_strength: float = 0.5,
    fractions: tuple[float, float] = (0.15, 0.2),
    seed: int = 0,
    min_size: int = 60,
) -> list[ImageSite]:
    """Deal images over ``n_sites`` by ``Dir(alpha)`` with a scanner each; split every site three ways.

    Args:
        images: ``(n, S, S)`` uint8 or [0, 1] images (a channel axis is added).
        labels: binary labels ``(n,)`` or ``(n, 1)``.
        n_sites: number of sites.
        alpha: Dirichlet concentration (0.1: strong label skew; 1.0: moderate).
        shift_strength: scanner shift strength in [0, 1] (see ``scanner_shifts``).
        fractions: (validation, test) share of each site's images, stratified by class.
        seed: seeds the split, the scanners and the per-site split.
        min_size: fewest images a site may hold.
    """
    sites = partition_images(
        images,
        labels,
        n_sites=n_sites,
        alpha=alpha,
        shift_strength=shift_strength,
        seed=seed,
        min_size=min_size,
    )
    rng = np.random.default_rng(seed + 7)
    out = []
    for site in sites:
        parts = _stratified(site.labels, fractions, rng)
        x = site.images[:, None] if site.images.ndim == 3 else site.images
        out.append(
            ImageSite.from_arrays(
                site.name,
                {s: (x[p], site.labels[p].astype("float32")) for s, p in zip(SPLITS, parts, strict=True)},
                LabelSpec("binary"),
            )
        )
    return out
