"""One hospital's side of the heart-disease federation, FLARE-free.

:class:`HeartSite` owns the site's data and does everything a site does: encode its rows, send
feature moments, take the global scaling, train a round and evaluate a model. The FLARE executor
only converts messages and calls it; benchmarks and tests call it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fedhealth.constants import M_N_TEST, M_N_TRAIN
from fedhealth.data.features import Scaler, encode, feature_names, local_moments
from fedhealth.data.site_data import SiteTable
from fedhealth.training.loops import LocalTrainConfig, evaluate, train_local

SCALING_MODES = ("global", "site")


@dataclass
class HeartSite:
    """A site's data and its scaling.

    Args:
        name: the site's name (no patient information).
        train: the site's training split.
        test: the site's held-out test split (used for evaluation only).
        chol_zero_as_missing: treat a recorded cholesterol of 0 as missing, with an indicator.
        scaling: ``"global"`` (federated statistics; wait for :meth:`set_scaling`) or ``"site"``
            (FLamby: this site's own training mean and standard deviation).
    """

    name: str
    train: SiteTable
    test: SiteTable
    chol_zero_as_missing: bool = True
    scaling: str = "global"

    def __post_init__(self) -> None:
        if self.scaling not in SCALING_MODES:
            raise ValueError(f"scaling must be one of {SCALING_MODES}, not {self.scaling!r}.")
        self._x_train_raw = encode(self.train.features, chol_zero_as_missing=self.chol_zero_as_missing)
        self._x_test_raw = encode(self.test.features, chol_zero_as_missing=self.chol_zero_as_missing)
        self.scaler: Scaler | None = Scaler.fit(self._x_train_raw) if self.scaling == "site" else None

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_test(self) -> int:
        return len(self.test)

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.chol_zero_as_missing)

    @property
    def n_features(self) -> int:
        return self._x_train_raw.shape[1]

    def moments(self, *, min_cell: int | None = None) -> dict[str, list[float | None]]:
        """Counts, sums and sums of squares of the training features: all that leaves the site
        (small cells withheld when ``min_cell`` is given: :func:`fedhealth.data.features.local_moments`)."""
        return local_moments(self._x_train_raw, min_cell=min_cell)

    def set_scaling(self, stats: Mapping[str, list[float]]) -> None:
        """Take the global scaling (ignored in ``"site"`` mode, which keeps FLamby's local scaling)."""
        if self.scaling == "global":
            self.scaler = Scaler.from_stats(dict(stats))

    def _require_scaler(self) -> Scaler:
        if self.scaler is None:
            raise RuntimeError(
                f"Site {self.name} has no feature scaling yet: in 'global' scaling mode the job must run "
                "the federated statistics workflow before training."
            )
        return self.scaler

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Scaled features and labels of ``"train"`` or ``"test"``."""
        scaler = self._require_scaler()
        if split == "train":
            return scaler.transform(self._x_train_raw), self.train.labels
        return scaler.transform(self._x_test_raw), self.test.labels

    def train_round(
        self, model: torch.nn.Module, config: LocalTrainConfig, *, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """Train ``model`` in place for one round; returns training metrics and the sample count."""
        x, y = self.arrays("train")
        stats = train_local(model, x, y, config, generator=generator)
        return {**stats, M_N_TRAIN: float(self.n_train)}

    def evaluate(self, model: torch.nn.Module, split: str = "test") -> dict[str, float]:
        """Metrics of ``model`` on this site's split, with the split sizes."""
        x, y = self.arrays(split)
        return {**evaluate(model, x, y), M_N_TRAIN: float(self.n_train), M_N_TEST: float(self.n_test)}
