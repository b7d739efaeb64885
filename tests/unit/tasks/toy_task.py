"""A toy third task, written as ``docs/extending.md`` says a new tabular dataset is added.

A site keeps ``<data_root>/toy/train.csv`` and ``test.csv``: numeric feature columns and a 0/1 ``label``
column. The task trains the kit's :class:`~fedhealth.models.tabular.TabularNet` with the kit's local loop;
everything the FLARE executor and the client algorithms need comes from the task contract
(:mod:`fedhealth.tasks.base`). ``tests/unit/tasks/test_extending_recipe.py`` installs it as a site would
and runs FedAvg through the real executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from fedhealth import constants as C
from fedhealth.data.messages import SiteDataError
from fedhealth.data.site_data import resolve_data_root
from fedhealth.models.state import tabular_from_weights
from fedhealth.models.tabular import TabularNet
from fedhealth.tasks.base import ExtraTask, SiteContext
from fedhealth.tasks.registry import register_task
from fedhealth.training.loops import LocalTrainConfig, evaluate, predict, train_local
from fedhealth.training.site_metrics import evaluate_with_intervals

LABEL = "label"
SPLITS = ("train", "test")


def read_split(path: Path, features: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of one CSV; a missing file or a wrong column is named, never a value."""
    if not path.is_file():
        raise SiteDataError(f"{path.name}: not found in the site's toy folder")
    frame = pd.read_csv(path)
    if LABEL not in frame.columns or frame.shape[1] != features + 1:
        raise SiteDataError(f"{path.name}: expected {features} feature columns and {LABEL!r}")
    labels = frame.pop(LABEL).to_numpy("float32")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise SiteDataError(f"{path.name}: {LABEL!r} must be 0 or 1")
    return frame.to_numpy("float32"), labels


class ToySite:
    """One site's toy table (the :class:`~fedhealth.tasks.base.Site` contract)."""

    round_split = "test"
    binary = True

    def __init__(self, name: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.name = name
        self.splits = dict(splits)

    @property
    def n_train(self) -> int:
        return len(self.splits["train"][1])

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        return self.splits[split]

    def train(
        self,
        model: nn.Module,
        config: LocalTrainConfig,
        *,
        generator: torch.Generator,
        seed: int,
        anchor: list[torch.Tensor] | None = None,
    ) -> dict[str, float]:
        x, y = self.splits["train"]
        return train_local(model, x, y, config, global_params=anchor, generator=generator)

    def evaluate(self, model: nn.Module, split: str) -> dict:
        return evaluate(model, *self.splits[split])

    def validate(self, model: nn.Module, *, n_bootstrap: int) -> dict:
        x, y = self.splits["test"]
        metrics = {**evaluate(model, x, y), **self.sizes()}
        metrics[C.M_INTERVALS] = evaluate_with_intervals(y, predict(model, x), n_bootstrap=n_bootstrap)
        return metrics

    def sizes(self) -> dict[str, int]:
        return {C.M_N_TRAIN: self.n_train, C.M_N_TEST: len(self.splits["test"][1])}

    def extra_tasks(self) -> dict[str, ExtraTask]:
        return {}


@register_task("toy")
@dataclass(frozen=True)
class ToyTask:
    """A binary table with ``features`` numeric columns per site.

    Args:
        features: the number of feature columns.
        folder: the table's folder inside the site's data root.
    """

    features: int = 4
    folder: str = "toy"
    name = "toy"
    steps = ()

    def load_site(self, context: SiteContext) -> ToySite:
        root = resolve_data_root(context.site_root) / self.folder
        return ToySite(context.name, {s: read_split(root / f"{s}.csv", self.features) for s in SPLITS})

    def build_model(self, site: ToySite, **model_args: object) -> nn.Module:
        return TabularNet(in_features=self.features, **model_args)  # type: ignore[arg-type]

    def model_from_weights(self, weights: Mapping[str, object], site: ToySite) -> nn.Module:
        model = tabular_from_weights(weights)
        if model.in_features != self.features:
            raise ValueError(f"the model takes {model.in_features} features; this task has {self.features}")
        return model


def write_toy_site(data_root: Path, *, n_train: int, n_test: int, seed: int, features: int = 4) -> Path:
    """Synthetic rows for one site: ``label = 1`` when a fixed linear score plus noise is positive."""
    rng = np.random.default_rng(seed)
    direction = np.linspace(1.0, -1.0, features)
    folder = data_root / "toy"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.normal(size=(n, features)) + 0.3 * seed  # each site a little shifted
        y = (x @ direction + 0.5 * rng.normal(size=n) > 0.3 * seed * direction.sum()).astype(int)
        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(features)])
        frame[LABEL] = y
        frame.to_csv(folder / f"{split}.csv", index=False)
    return data_root
