"""Server aggregation rules of the in-process loop, each one object that declares what it needs.

A rule sees the global weights and every answering site's :class:`Reply` and sets the next global
weights (and, for clustered FL, each site's model). What it reads from a reply is declared in
:attr:`Rule.needs` and :attr:`Rule.extras` (the loop checks every reply against them), so no code
branches on a rule's name. The maths are
the kit's own FLARE-free cores: :func:`fedhealth.training.aggregation.weighted_average` (FedAvg,
McMahan et al. 2017), :func:`fedhealth.training.robust.aggregate_updates` (median, trimmed and clipped
means, FedNova of Wang et al. 2020), :func:`fedhealth.algorithms.scaffold.server_update` (Karimireddy et
al. 2020), :class:`fedhealth.algorithms.fedopt.ServerOptimizer` (Reddi et al. 2021) and
:func:`fedhealth.algorithms.clustering.split_if_apart` (Sattler et al. 2020).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedhealth import constants as C
from fedhealth.algorithms import scaffold
from fedhealth.algorithms.clustering import split_if_apart
from fedhealth.algorithms.fedopt import ServerOptimizer, averaged_delta
from fedhealth.training.aggregation import weighted_average
from fedhealth.training.robust import RULES, aggregate_updates

Weights = dict[str, np.ndarray]
NEEDS = ("n_train", "steps", "extras")


@dataclass
class Reply:
    """What one site sent back in a round: its weights, sample count, optimizer steps and extra parts."""

    name: str
    weights: Weights
    n_train: float
    steps: int
    extras: dict[str, Weights] = field(default_factory=dict)


def _float32(weights: Mapping[str, np.ndarray]) -> Weights:
    return {k: np.asarray(v, dtype="float32") for k, v in weights.items()}


class Rule:
    """Base of the rules: one global model, every site trains from it (override what differs).

    Attributes:
        needs: what :meth:`aggregate` reads from a reply, among :data:`NEEDS`.
        extras: the extra parts every reply must carry (SCAFFOLD: the control-variate change).
    """

    needs: tuple[str, ...] = ("n_train",)
    extras: tuple[str, ...] = ()

    def check(self, reply: Reply) -> None:
        """Raise ``ValueError`` when ``reply`` lacks an extra part this rule reads."""
        missing = [k for k in self.extras if k not in reply.extras]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs {missing} from every site but {reply.name!r} sent none; "
                "the sites must run the client algorithm that sends it."
            )

    def start(self, weights: Weights, names: Sequence[str]) -> None:
        """The run starts from ``weights`` with the sites ``names``."""
        self.global_weights = _float32(weights)
        self.names = list(names)

    def before_round(self, round_index: int) -> None:
        """Called before the round's sites train (clustered FL takes its fixed clusters here)."""

    def send(self, name: str) -> tuple[Weights, dict[str, Weights]]:
        """The weights and extra parts the site ``name`` trains from this round."""
        return self.global_weights, {}

    def aggregate(self, round_index: int, replies: Sequence[Reply]) -> None:
        """Set the next global weights from the answering sites' replies."""
        raise NotImplementedError

    def site_weights(self, name: str) -> Weights:
        """The model the site ``name`` uses after the round (the global model by default)."""
        return self.global_weights


class Mean(Rule):
    """FedAvg: the sample-weighted mean of the sites' weights (FLARE's weighted aggregator)."""

    def aggregate(self, round_index: int, replies: Sequence[Reply]) -> None:
        averaged = weighted_average([r.weights for r in replies], [r.n_train for r in replies])
        self.global_weights = _float32(averaged)


@dataclass
class UpdateRule(Rule):
    """A rule of :func:`~fedhealth.training.robust.aggregate_updates` on the updates ``w_i - w``.

    Args:
        rule: ``mean``, ``median``, ``trimmed_mean``, ``clipped_mean`` or ``fednova``.
        args: the rule's own settings (``trim_fraction``, ``clip_norm``).
    """

    rule: str = "mean"
    args: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"Unknown aggregation rule {self.rule!r}; choose one of {', '.join(RULES)}.")
        self.needs = ("n_train", "steps") if self.rule == "fednova" else ("n_train",)

    def aggregate(self, round_index: int, replies: Sequence[Reply]) -> None:
        start = {k: v.astype("float64") for k, v in self.global_weights.items()}
        updates = [{k: r.weights[k].astype("float64") - start[k] for k in start} for r in replies]
        steps = [r.steps for r in replies] if "steps" in self.needs else None
        update = aggregate_updates(
            updates, [r.n_train for r in replies], rule=self.rule, steps=steps, **self.args
        )
        self.global_weights = _float32({k: start[k] + update[k] for k in start})


@dataclass
class ScaffoldServer(Rule):
    """SCAFFOLD's server: sends its control variate ``c`` and updates ``x`` and ``c`` from the replies.

    Args:
        global_lr: the server step ``eta_g``.
    """

    global_lr: float = 1.0
    needs = ("n_train", "extras")
    extras = (C.SCAFFOLD_CTRL_DIFF,)

    def start(self, weights: Weights, names: Sequence[str]) -> None:
        super().start(weights, names)
        self.c_global = scaffold.zeros_like({k: v.astype("float64") for k, v in weights.items()})

    def send(self, name: str) -> tuple[Weights, dict[str, Weights]]:
        return self.global_weights, {C.SCAFFOLD_CTRL_GLOBAL: self.c_global}

    def aggregate(self, round_index: int, replies: Sequence[Reply]) -> None:
        start = {k: v.astype("float64") for k, v in self.global_weights.items()}
        new_x, self.c_global = scaffold.server_update(
            start,
            self.c_global,
            [{k: r.weights[k].astype("float64") - start[k] for k in start} for r in replies],
            [r.extras[C.SCAFFOLD_CTRL_DIFF] for r in replies],
            n_sites=len(self.names),
            global_lr=self.global_lr,
            site_weights=[r.n_train for r in replies],
        )
        self.global_weights = _float32(new_x)


@dataclass
class FedOptServer(Rule):
    """FedOpt: the averaged update is a pseudo-gradient for a server Adam, Yogi or Adagrad step."""

    optimizer: ServerOptimizer = field(default_factory=lambda: ServerOptimizer(kind="yogi"))

    def aggregate(self, round_index: int, replies: Sequence[Reply]) -> None:
        current = {k: v.astype("float64") for k, v in self.global_weights.items()}
        averaged = weighted_average([r.weights for r in replies], [r.n_train for r in replies])
        self.global_weights = _float32(self.optimizer.step(current, averaged_delta(current, averaged)))


@dataclass
class Clustered(Rule):
    """Clustered FL: FedAvg inside each cluster, then a cluster splits when its updates point apart.

    Args:
        split_round: first round that may split (or that ``fixed_clusters`` take effect).
        split_threshold: split when the two groups' largest cross similarity is below it.
        max_clusters: most clusters.
        fixed_clusters: lists of site names used from ``split_round`` instead of splitting.
    """

    split_round: int = 5
    split_threshold: float = 0.0
    max_clusters: int = 2
    fixed_clusters: Sequence[Sequence[str]] | None = None

    def start(self, weights: Weights, names: Sequence[str]) -> None:
        super().start(weights, names)
        self.groups: list[list[str]] = [list(names)]
        self.models: list[Weights] = [self.global_weights]
        self.history: list[list[list[str]]] = []

    def _cluster(self, name: str) -> int:
        return next(k for k, g in enumerate(self.groups) if name in g)

    def send(self, name: str) -> tuple[Weights, dict[str, Weights]]:
        return self.models[self._cluster(name)], {}

    def before_round(self, round_index: int) -> None:
        """Take the fixed clusters at ``split_round``."""
        if self.fixed_clusters is not None and round_index == self.split_round:
            self.groups = [list(g) for g in self.fixed_clusters]
            self.models = [self.models[0] for _ in self.groups]

    def aggregate(self, round_index: int, replies: Sequence[Reply]) -> None:
        by_name = {r.name: r for r in replies}
        groups, models = [], []
        for group, start in zip(self.groups, self.models, strict=True):
            got = [by_name[n] for n in group if n in by_name]
            model = _float32(weighted_average([r.weights for r in got], [r.n_train for r in got]))
            can_split = self.fixed_clusters is None and len(got) >= 2 and len(self.groups) < self.max_clusters
            if can_split and round_index >= self.split_round:
                updates = [{k: r.weights[k] - start[k] for k in start} for r in got]
                parts = split_if_apart(updates, threshold=self.split_threshold)
                if parts is not None:
                    for part in parts:
                        sub = [got[j] for j in part]
                        groups.append([r.name for r in sub])
                        models.append(
                            _float32(weighted_average([r.weights for r in sub], [r.n_train for r in sub]))
                        )
                    continue
            groups.append(group)
            models.append(model)
        self.groups, self.models = groups, models
        self.global_weights = models[0]
        self.history.append([list(g) for g in groups])

    def site_weights(self, name: str) -> Weights:
        return self.models[self._cluster(name)]
