"""The heart-disease task: UCI Heart Disease rows per hospital, FLamby's preprocessing.

A site keeps ``<data_root>/train.csv`` and ``test.csv`` (:mod:`fedhealth.data.site_data`). Two extra
steps come before training: ``fed_stats`` (the site's feature counts, sums and sums of squares, the only
data-derived numbers that leave it besides updates) and ``set_scaling`` (the global mean and standard
deviation). The scaling is kept in the run folder so a restarted site picks it up again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedhealth import constants as C
from fedhealth.data.site_data import load_site, resolve_data_root
from fedhealth.models.state import tabular_from_weights
from fedhealth.models.tabular import TabularNet
from fedhealth.privacy.small_cells import DEFAULT_MIN_CELL, site_min_cell
from fedhealth.tasks.arrays import train_on_arrays, validate_on_arrays
from fedhealth.tasks.base import ExtraTask, SiteContext
from fedhealth.tasks.registry import register_task
from fedhealth.training.heart_site import SCALING_MODES, HeartSite
from fedhealth.training.loops import LocalTrainConfig


class HeartTaskSite:
    """A :class:`~fedhealth.training.heart_site.HeartSite` seen through the task contract."""

    round_split = "test"  # FLamby evaluates rounds on each centre's test split
    binary = True

    def __init__(
        self, site: HeartSite, run_dir: Path | None = None, *, min_cell: int = DEFAULT_MIN_CELL
    ) -> None:
        self.site = site
        self.min_cell = min_cell  # the smallest count its federated statistics release
        self.name = site.name
        self._run_dir = run_dir
        self._restore_scaling()

    @property
    def n_train(self) -> int:
        return self.site.n_train

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        return self.site.arrays(split)

    def train(
        self,
        model: nn.Module,
        config: LocalTrainConfig,
        *,
        generator: torch.Generator,
        seed: int,
        anchor: list[torch.Tensor] | None = None,
    ) -> dict[str, float]:
        return train_on_arrays(self, model, config, generator=generator, anchor=anchor)

    def evaluate(self, model: nn.Module, split: str) -> dict:
        return self.site.evaluate(model, split)

    def validate(self, model: nn.Module, *, n_bootstrap: int) -> dict:
        return validate_on_arrays(self, model, n_bootstrap=n_bootstrap)

    def sizes(self) -> dict[str, int]:
        return {C.M_N_TRAIN: self.site.n_train, C.M_N_TEST: self.site.n_test}

    def extra_tasks(self) -> dict[str, ExtraTask]:
        return {C.TASK_FED_STATS: self._fed_stats, C.TASK_SET_SCALING: self._set_scaling}

    # ----------------------------------------------------------------------------- extra steps
    def _fed_stats(self, data: Mapping[str, object]) -> dict:
        asked = data.get("min_cell") if isinstance(data, Mapping) else None
        min_cell = max(self.min_cell, int(asked)) if isinstance(asked, int) and asked > 0 else self.min_cell
        moments = self.site.moments(min_cell=min_cell)  # small cells withheld
        return {**moments, C.S_FEATURES: self.site.feature_names, C.M_N_TRAIN: self.site.n_train}

    def _set_scaling(self, stats: Mapping[str, object]) -> None:
        if list(stats.get(C.S_FEATURES, [])) != self.site.feature_names:  # type: ignore[arg-type]
            raise ValueError("the global scaling was computed for other features than this site encodes")
        self.site.set_scaling(dict(stats))  # type: ignore[arg-type]
        if self._run_dir is not None:
            self._run_dir.mkdir(parents=True, exist_ok=True)
            (self._run_dir / C.SCALING_STATE_FILE).write_text(json.dumps(dict(stats)))
        return None

    def _restore_scaling(self) -> None:
        """Reload the global scaling after a site restart within the same job."""
        path = self._run_dir / C.SCALING_STATE_FILE if self._run_dir else None
        if path is not None and path.is_file():
            self.site.set_scaling(json.loads(path.read_text()))


@register_task("heart")
@dataclass(frozen=True)
class HeartTask:
    """Heart disease (binary), one table per hospital.

    Args:
        scaling: ``"global"`` (federated statistics, the kit's default) or ``"site"`` (FLamby).
        chol_zero_as_missing: treat a recorded cholesterol of 0 as missing, with an indicator.
    """

    scaling: str = "global"
    chol_zero_as_missing: bool = True
    name = "heart"
    steps = (C.TASK_FED_STATS, C.TASK_SET_SCALING)

    def __post_init__(self) -> None:
        if self.scaling not in SCALING_MODES:
            raise ValueError(f"scaling must be one of {SCALING_MODES}, not {self.scaling!r}.")

    def load_site(self, context: SiteContext) -> HeartTaskSite:
        train, test = load_site(resolve_data_root(context.site_root))
        min_cell = site_min_cell(context.settings)
        return self.site_from_tables(context.name, train, test, run_dir=context.run_dir, min_cell=min_cell)

    def site_from_tables(
        self, name: str, train, test, *, run_dir: Path | None = None, min_cell: int = DEFAULT_MIN_CELL
    ) -> HeartTaskSite:
        """A site from tables already in memory (the in-process loop's path)."""
        site = HeartSite(
            name, train, test, chol_zero_as_missing=self.chol_zero_as_missing, scaling=self.scaling
        )
        return HeartTaskSite(site, run_dir, min_cell=min_cell)

    def build_model(self, site: HeartTaskSite, **model_args: object) -> nn.Module:
        return TabularNet(in_features=site.site.n_features, **model_args)  # type: ignore[arg-type]

    def model_from_weights(self, weights: Mapping[str, object], site: HeartTaskSite) -> nn.Module:
        model = tabular_from_weights(weights)
        if model.in_features != site.site.n_features:
            raise ValueError(
                f"the model takes {model.in_features} features but this site encodes {site.site.n_features} "
                f"(chol_zero_as_missing={self.chol_zero_as_missing}); the job's model and task disagree"
            )
        return model
