"""The client-algorithm contract: hooks around one local round, a registry, and composition rules.

An algorithm (FedProx, SCAFFOLD, Ditto, fine-tuning, DP-SGD, top-k with error feedback, the step cap)
is a small dataclass whose fields are its job options; a typo in a job is an error naming the options it
takes. A job lists algorithms, ``[{"name": "dp_sgd", "args": {...}}, {"name": "topk", ...}]``; each
declares with :meth:`ClientAlgorithm.check` which others it cannot run with, and why.

A site may install its own algorithm: a package that declares an entry point in the
``fedhealth.client_algorithms`` group (``name = "module:Class"``, a :class:`ClientAlgorithm` subclass).
As with tasks (:mod:`fedhealth.tasks.registry`), it is loaded only when a job names an algorithm that is
neither built in nor registered, and only under the name the site declared.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torch import nn

from fedhealth.tasks.registry import build_options, installed_names, load_installed

if TYPE_CHECKING:
    from fedhealth.tasks.base import Site, Task
    from fedhealth.training.loops import LocalTrainConfig

Weights = dict[str, np.ndarray]
WEIGHTS = "WEIGHTS"
WEIGHT_DIFF = "WEIGHT_DIFF"


@dataclass
class RoundInput:
    """What a train task brings: the global weights, the server's learning rate, the round, extra parts.

    Attributes:
        weights: the global model.
        lr: the round's learning rate from the server (``None`` when the workflow sends none).
        round_index: the round (0-based).
        num_rounds: the job's rounds (0 when the server does not say).
        extras: other parts of the task, e.g. SCAFFOLD's server control variate.
    """

    weights: Weights
    lr: float | None
    round_index: int = 0
    num_rounds: int = 0
    extras: dict[str, Weights] = field(default_factory=dict)


@dataclass
class RoundState:
    """One round as the hooks see it; the runner fills it and the hooks read or change it.

    Attributes:
        model: the site's model, trained in place during the round.
        received: an untouched copy of the global model.
        start: the global weights as float64 arrays.
        lr: the learning rate this round trains at.
        config: the round's local-training settings (hooks may change them in ``configure``).
        stats: the local training's own numbers (``train_loss``, ``steps``, ...).
        update: what the site sends (local weights, or a difference when ``kind`` is ``WEIGHT_DIFF``).
        kind: ``WEIGHTS`` or ``WEIGHT_DIFF``.
        extras: extra parts the site sends (name -> difference), e.g. SCAFFOLD's control-variate change.
        metrics: the round's aggregate numbers that travel with the update.
        notes: what the site's log should say about the round (numbers only).
    """

    rnd: RoundInput
    model: nn.Module
    received: nn.Module
    start: Weights
    lr: float
    config: LocalTrainConfig
    stats: dict = field(default_factory=dict)
    update: Weights = field(default_factory=dict)
    kind: str = WEIGHTS
    extras: dict[str, Weights] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # log lines for the site's log (numbers only)


@dataclass(frozen=True)
class AlgorithmContext:
    """What an algorithm may use once the site is loaded (aggregate access only; data stays in ``site``)."""

    task: Task
    site: Site
    local: Mapping[str, object]  # the job's local-training settings (batch_size, local_steps, ...)
    settings: Mapping[str, object]  # the site's own merged settings
    run_dir: Path | None = None
    generator: torch.Generator | None = None  # the runner's shuffling generator (shared, for reproducibility)
    seed: int | None = None  # seeds DP noise in the in-process loop; None (fresh noise) at a real site


class ClientAlgorithm:
    """Base of the plug-ins: every hook does nothing, so a plug-in overrides only what it changes."""

    name: ClassVar[str] = ""
    trains: ClassVar[bool] = False  # replaces the task's local training (DP-SGD)

    def check(self, others: Sequence[ClientAlgorithm], local: Mapping[str, object]) -> None:
        """Raise ``ValueError`` saying why this cannot run with ``others`` under the job's settings."""

    def check_site(self, site: Site) -> None:
        """Raise ``ValueError`` when this algorithm cannot train the site's task (e.g. its label form)."""

    def start(self, context: AlgorithmContext) -> None:
        """The site is loaded: keep what the algorithm needs for the run."""

    def round_lr(self, rnd: RoundInput) -> float | None:
        """This round's learning rate when the algorithm sets it (``None``: the server's)."""
        return None

    def configure(self, config: LocalTrainConfig, state: RoundState) -> LocalTrainConfig:
        """The round's local-training settings (FedProx's ``mu``, the step cap)."""
        return config

    def before_round(self, state: RoundState) -> None:
        """Read the task's extra parts (SCAFFOLD's server variate) before training."""

    def train_context(self, state: RoundState) -> AbstractContextManager:
        """Wraps the local training (SCAFFOLD's gradient correction)."""
        return nullcontext()

    def train(self, state: RoundState) -> dict | None:
        """Local training when :attr:`trains` (DP-SGD); the stats dict."""
        return None

    def after_round(self, state: RoundState) -> None:
        """Change what is sent or add metrics once the model is trained (Ditto, top-k, SCAFFOLD)."""


_REGISTRY: dict[str, type[ClientAlgorithm]] = {}
# Name -> module that registers it (imported only when a job names it: Opacus loads only in DP jobs).
BUILTIN: dict[str, str] = {
    "fedavg": "fedhealth.client.fedprox",
    "fedprox": "fedhealth.client.fedprox",
    "scaffold": "fedhealth.client.scaffold",
    "ditto": "fedhealth.client.ditto",
    "finetune": "fedhealth.client.finetune",
    "dp_sgd": "fedhealth.client.dp_sgd",
    "topk": "fedhealth.client.topk",
    "step_cap": "fedhealth.client.step_cap",
    "tree_bagging": "fedhealth.client.tree_bagging",
}
# The entry-point group of site-installed algorithms (a package's ``[project.entry-points."..."]``).
ENTRY_POINT_GROUP = "fedhealth.client_algorithms"


def register_algorithm(cls: type[ClientAlgorithm]) -> type[ClientAlgorithm]:
    """Class decorator: register a plug-in under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name to be registered.")
    _REGISTRY[cls.name] = cls
    return cls


def algorithm_names() -> list[str]:
    """Every algorithm a job may name: built in, registered, or installed at this site."""
    return sorted(set(BUILTIN) | set(_REGISTRY) | set(installed_names(ENTRY_POINT_GROUP)))


def build_algorithm(name: str, args: Mapping[str, object] | None = None) -> ClientAlgorithm:
    """The plug-in ``name`` with its options; unknown names and options are errors."""
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _REGISTRY:
        _register_installed(name)
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown client algorithm {name!r}; known: {', '.join(algorithm_names())}.")
    from_args = getattr(cls, "from_args", None)
    if from_args is not None:
        return from_args(dict(args or {}))
    return build_options(cls, args or {}, what=f"client algorithm {name!r}")


def _register_installed(name: str) -> None:
    """Register the site-installed algorithm ``name``, if a package here declares one."""
    cls = load_installed(ENTRY_POINT_GROUP, name)
    if cls is None or name in _REGISTRY:  # none installed, or its module registered it on import
        return
    if not issubclass(cls, ClientAlgorithm):
        raise ValueError(
            f"the installed client algorithm {name!r} ({cls.__module__}.{cls.__qualname__}) must subclass "
            "fedhealth.client.base.ClientAlgorithm."
        )
    if not dataclasses.is_dataclass(cls) and not hasattr(cls, "from_args"):
        raise ValueError(
            f"the installed client algorithm {name!r} ({cls.__module__}.{cls.__qualname__}) must be a "
            "dataclass whose fields are its job options."
        )
    if cls.name and cls.name != name:
        raise ValueError(
            f"the installed client algorithm {name!r} ({cls.__module__}.{cls.__qualname__}) calls itself "
            f"{cls.name!r}; the entry point's name and the class's name must agree."
        )
    cls.name = name
    register_algorithm(cls)


def build_algorithms(
    specs: Sequence[Mapping[str, object] | str] | None, local: Mapping[str, object]
) -> list[ClientAlgorithm]:
    """A job's ``algorithms`` list, built and checked as a whole.

    Each entry is a name or ``{"name": ..., "args": {...}}``. ``fedavg`` (the default, an empty list)
    adds nothing.

    Raises:
        ValueError: an unknown name or option, a repeated algorithm, or a pair that cannot compose.
    """
    built: list[ClientAlgorithm] = []
    for spec in specs or []:
        if isinstance(spec, str):
            spec = {"name": spec}
        extra = sorted(set(spec) - {"name", "args"})
        if extra or "name" not in spec:
            raise ValueError(f"an algorithms entry takes 'name' and 'args', got {sorted(spec)}.")
        built.append(build_algorithm(str(spec["name"]), spec.get("args") or {}))  # type: ignore[arg-type]
    names = [a.name for a in built]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"client algorithm(s) {twice} listed more than once.")
    if sum(a.trains for a in built) > 1:
        raise ValueError(f"only one algorithm may replace local training; {names} has several.")
    for algorithm in built:
        algorithm.check([a for a in built if a is not algorithm], local)
    return [a for a in built if a.name != "fedavg"]


def named(algorithms: Sequence[ClientAlgorithm], *names: str) -> list[str]:
    """Which of ``names`` are among ``algorithms`` (for the composition checks)."""
    present = {a.name for a in algorithms}
    return [n for n in names if n in present]


def copy_weights(model: nn.Module) -> Weights:
    """The model's state as float64 arrays (the start point of differences)."""
    return {k: v.detach().cpu().numpy().astype("float64") for k, v in model.state_dict().items()}
