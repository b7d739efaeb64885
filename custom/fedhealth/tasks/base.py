"""The task contract: what a site trains on, FLARE-free.

A *task* (heart table, DICOM images, a hospital's EHR table) is a plug-in registered by name
(:mod:`fedhealth.tasks.registry`). A job names it and its arguments in config; the site's data location
is the site's own setting. The generic executor (:class:`fedhealth.executors.site_executor.SiteExecutor`)
and the in-process loop of the tools package call only what this module declares, so every client
algorithm (:mod:`fedhealth.site`) works on every task.

The shape follows NVFlare's ``Learner`` spec and FLamby's per-dataset contract: a :class:`Task` loads a
:class:`Site` from the site's own folder and turns weights into a model; the site trains a round,
evaluates and validates. Only aggregate numbers come out of a site's methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from fedhealth.training.loops import LocalTrainConfig

Weights = dict[str, np.ndarray]
# An extra site task (e.g. heart's federated statistics): the task's data in, a data dict out (None: OK).
ExtraTask = Callable[[Mapping[str, object]], "dict | None"]


@dataclass(frozen=True)
class SiteContext:
    """Where a site runs: its name, its folder, its merged settings and the job's run folder."""

    name: str
    site_root: Path
    settings: Mapping[str, object]
    run_dir: Path | None = None


@runtime_checkable
class Site(Protocol):
    """One hospital's data for one task, loaded from its own folder.

    Attributes:
        name: the site's name (no patient information).
        round_split: the split that a train task's received/local metrics are computed on
            (``"test"`` for heart as in FLamby, ``"val"`` for images).
        binary: whether labels are 0/1 with one output (DP-SGD and Ditto train with BCE on them).
    """

    name: str
    round_split: str
    binary: bool

    @property
    def n_train(self) -> int: ...  # noqa: D102

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Model inputs and labels of a split (they never leave the site)."""
        ...

    def train(
        self,
        model: nn.Module,
        config: LocalTrainConfig,
        *,
        generator: torch.Generator,
        seed: int,
        anchor: list[torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """Train ``model`` in place for one round; returns ``train_loss`` and ``steps``.

        ``seed`` is the round's seed; FedProx pulls toward ``anchor`` (default: ``model`` on entry).
        """
        ...

    def evaluate(self, model: nn.Module, split: str) -> dict:
        """``accuracy``, ``auc``, ``loss`` (and task extras) of ``model`` on a split."""
        ...

    def validate(self, model: nn.Module, *, n_bootstrap: int) -> dict:
        """The cross-site ``validate`` task: test-split metrics with 95% bootstrap ``intervals``."""
        ...

    def sizes(self) -> dict[str, int]:
        """``n_train``, ``n_test`` and any counts the task reports (e.g. quarantined files)."""
        ...

    def extra_tasks(self) -> dict[str, ExtraTask]:
        """FLARE task name -> handler for the task's own steps (e.g. ``fed_stats``, ``set_scaling``)."""
        ...


@runtime_checkable
class Task(Protocol):
    """A dataset family: builds sites from their folders and models from weights.

    Attributes:
        name: the registered name.
        steps: the task's own FLARE tasks before training (heart: ``fed_stats``, ``set_scaling``);
            its sites answer them through :meth:`Site.extra_tasks`.
    """

    name: str
    steps: tuple[str, ...]

    def load_site(self, context: SiteContext) -> Site:
        """Load the site's splits from its data folder; raise a ``SiteDataError`` naming what is wrong."""
        ...

    def build_model(self, site: Site, **model_args: object) -> nn.Module:
        """A fresh model for ``site``'s inputs (the in-process loop's initial model)."""
        ...

    def model_from_weights(self, weights: Mapping[str, object], site: Site) -> nn.Module:
        """The model the server sent, checked against what ``site`` feeds it."""
        ...
