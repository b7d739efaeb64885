"""SCAFFOLD (Karimireddy et al. 2020) at a site: control variates correct each local gradient.

The server (FLARE's ``ScatterAndGatherScaffold``, or the in-process loop) sends the global weights and
its control variate ``c``; the site keeps its own ``c_i`` for the run, corrects each gradient by
``c - c_i`` and answers with its new weights and ``c_i+ - c_i`` (option II), all through
:mod:`fedhealth.algorithms.scaffold`. ``ScatterAndGatherScaffold`` does not call the shareable generator,
so the learning-rate schedule ``lr * gamma ** round`` is this plug-in's option.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np

from fedhealth import constants as C
from fedhealth.algorithms import scaffold
from fedhealth.client.base import ClientAlgorithm, RoundInput, RoundState, named, register_algorithm
from fedhealth.training.schedule import lr_for_round

CONTROL_NORM = "scaffold_control_norm"  # the round metric: L2 norm of the site's variate c_i (aggregate)


@register_algorithm
@dataclass
class Scaffold(ClientAlgorithm):
    """SCAFFOLD's site side.

    Args:
        lr: local learning rate of round 0.
        gamma: per-round decay.
        lr_scale: the local step the control variates assume is ``lr * lr_scale``: 1 for plain SGD,
            ``1 / (1 - beta)`` for heavy-ball momentum ``beta`` (the image loop's SGD has 0.9: use 10).
    """

    lr: float
    gamma: float = 1.0
    lr_scale: float = 1.0
    name = "scaffold"
    _c_local: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False)
    _c_global: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.lr > 0 or not 0 < self.gamma <= 1 or not self.lr_scale > 0:
            raise ValueError(
                f"SCAFFOLD needs lr > 0, gamma in (0, 1] and lr_scale > 0; got lr={self.lr}, "
                f"gamma={self.gamma}, lr_scale={self.lr_scale}."
            )

    def check(self, others: Sequence[ClientAlgorithm], local: Mapping[str, object]) -> None:
        clash = named(others, "dp_sgd", "topk")
        if clash:
            raise ValueError(
                f"SCAFFOLD cannot run with {clash}: its workflow aggregates whole weights and control "
                "variates (top-k sends a difference), and its gradient correction would bypass DP-SGD's "
                "clipping."
            )

    def round_lr(self, rnd: RoundInput) -> float | None:
        return lr_for_round(self.lr, self.gamma, rnd.round_index)

    def before_round(self, state: RoundState) -> None:
        c_global = state.rnd.extras.get(C.SCAFFOLD_CTRL_GLOBAL)
        if c_global is None:
            raise ValueError(
                "the SCAFFOLD train task must carry the server control variate; run it under FLARE's "
                "ScatterAndGatherScaffold workflow"
            )
        self._c_global = {k: np.asarray(v, dtype="float64") for k, v in c_global.items()}
        if self._c_local is None:
            self._c_local = scaffold.zeros_like(state.start)

    def train_context(self, state: RoundState) -> AbstractContextManager:
        return scaffold.corrected_gradients(state.model, scaffold.correction(self._c_global, self._c_local))

    def after_round(self, state: RoundState) -> None:
        self._c_local, c_diff = scaffold.update_local_control(
            self._c_local,
            self._c_global,
            state.start,
            state.update,
            steps=int(state.stats[C.M_STEPS]),
            lr=state.lr * self.lr_scale,
        )
        state.extras[C.SCAFFOLD_CTRL_DIFF] = {k: v.astype("float32") for k, v in c_diff.items()}
        state.metrics[CONTROL_NORM] = float(
            np.sqrt(sum(float(np.sum(v * v)) for v in self._c_local.values()))
        )
