"""Image sites for the non-IID twin: a Dirichlet + scanner-shift split with train/val/test per site.

:func:`split_image_sites` pools a MedMNIST set's official splits, deals them over the sites with
:func:`fedhealth_tools.algorithms.partition.partition_images` (Dirichlet label skew, Hsu et al. 2019, and a
simulated scanner per site), then splits each site's images stratified into train / validation /
test, so every site is scored on its own population and scanner. :class:`ImageTrainSite` gives
:func:`fedhealth_tools.training.noniid_federation.run_noniid` the same four members a ``HeartSite`` does
(``name``, ``n_train``, ``train_round``, ``arrays``), so SCAFFOLD, FedOpt, Ditto and clustered FL run
on images through the same algorithm cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import evaluate_images, train_images
from fedhealth.training.loops import LocalTrainConfig
from fedhealth_tools.algorithms.partition import partition_images
from fedhealth_tools.imaging.federation import ImageData

SPLITS = ("train", "val", "test")


@dataclass
class ImageTrainSite:
    """One image site's splits (images ``(n, 1, S, S)`` in [0, 1], labels ``(n,)``)."""

    name: str
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    spec: LabelSpec = field(default_factory=lambda: LabelSpec("binary"))
    augment: bool = False

    def __post_init__(self) -> None:
        missing = [s for s in SPLITS if s not in self.x or s not in self.y]
        if missing:
            raise ValueError(f"Image site {self.name!r} lacks the split(s) {missing}.")
        if len(self.y["train"]) == 0:
            raise ValueError(f"Image site {self.name!r} has no training images.")

    @property
    def n_train(self) -> int:
        return len(self.y["train"])

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of one split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}.")
        return self.x[split], self.y[split]

    def train_round(
        self, model: nn.Module, config: LocalTrainConfig, *, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """One local round in place (:func:`fedhealth.imaging.loops.train_images`)."""
        return train_images(
            model,
            self.x["train"],
            self.y["train"],
            config,
            self.spec,
            augment=self.augment,
            generator=generator,
        )

    def evaluate(self, model: nn.Module, split: str) -> dict:
        """AUC, accuracy and loss of ``model`` on one of this site's splits."""
        x, y = self.arrays(split)
        return evaluate_images(model, x, y, self.spec)

    def image_data(self) -> ImageData:
        """Train and validation arrays for :func:`fedhealth_tools.imaging.federation.run_image_federation`."""
        return ImageData(self.x["train"], self.y["train"], self.x["val"], self.y["val"])


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
) -> list[ImageTrainSite]:
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
            ImageTrainSite(
                site.name,
                {s: x[p] for s, p in zip(SPLITS, parts, strict=True)},
                {s: site.labels[p].astype("float32") for s, p in zip(SPLITS, parts, strict=True)},
            )
        )
    return out
