"""Adaptive server optimizers for federated learning (Reddi et al. 2021, "Adaptive Federated
Optimization", Algorithm 2: FedAdagrad, FedAdam, FedYogi), FLARE-free.

The server treats the sample-weighted average of the sites' updates ``delta = avg(y_i) - x`` as a
pseudo-gradient step and applies::

    m = beta1 * m + (1 - beta1) * delta
    v = v + delta^2                                      (Adagrad)
    v = beta2 * v + (1 - beta2) * delta^2                (Adam)
    v = v - (1 - beta2) * delta^2 * sign(v - delta^2)    (Yogi)
    x = x + eta * m / (sqrt(v) + tau)

``v`` starts at ``tau^2`` as in the paper. ``"sgd"`` is ``x = x + eta * m`` (server momentum with
``beta1 > 0``); with ``eta = 1`` and ``beta1 = 0`` it is FedAvg.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

SERVER_OPTIMIZERS = ("sgd", "adagrad", "adam", "yogi")
Weights = dict[str, np.ndarray]


@dataclass
class ServerOptimizer:
    """The server's optimizer state and step.

    Args:
        kind: ``"sgd"``, ``"adagrad"``, ``"adam"`` or ``"yogi"``.
        lr: server learning rate ``eta``.
        beta1: first-moment decay (0 disables momentum).
        beta2: second-moment decay (Adam, Yogi).
        tau: adaptivity ``tau`` (the denominator's floor; initial ``v = tau^2``).
    """

    kind: str = "yogi"
    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    m: Weights = field(default_factory=dict)
    v: Weights = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in SERVER_OPTIMIZERS:
            raise ValueError(f"Server optimizer must be one of {SERVER_OPTIMIZERS}, not {self.kind!r}.")
        if self.lr <= 0:
            raise ValueError(f"The server learning rate must be positive, got {self.lr}.")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"beta1 and beta2 must be in [0, 1), got {self.beta1} and {self.beta2}.")
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}.")

    def step(self, weights: Mapping[str, np.ndarray], delta: Mapping[str, np.ndarray]) -> Weights:
        """The new global weights from the current ones and the averaged update ``delta``.

        Raises:
            ValueError: when ``delta`` does not carry the model's parameter names.
        """
        if set(delta) != set(weights):
            raise ValueError(f"The update must carry the model's parameter names; got {sorted(delta)}.")
        out = {}
        for k, x in weights.items():
            d = np.asarray(delta[k], dtype="float64")
            m = self.beta1 * self.m.get(k, np.zeros_like(d)) + (1 - self.beta1) * d
            self.m[k] = m
            if self.kind == "sgd":
                out[k] = np.asarray(x, "float64") + self.lr * m
                continue
            v = self.v.get(k, np.full_like(d, self.tau**2))
            d2 = d * d
            if self.kind == "adagrad":
                v = v + d2
            elif self.kind == "adam":
                v = self.beta2 * v + (1 - self.beta2) * d2
            else:
                v = v - (1 - self.beta2) * d2 * np.sign(v - d2)
            self.v[k] = v
            out[k] = np.asarray(x, "float64") + self.lr * m / (np.sqrt(v) + self.tau)
        return out

    def state_dict(self) -> dict[str, Weights]:
        """The moments, to persist the optimizer with the model."""
        return {"m": {k: v.copy() for k, v in self.m.items()}, "v": {k: v.copy() for k, v in self.v.items()}}

    def load_state_dict(self, state: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        self.m = {k: np.asarray(v, "float64") for k, v in state.get("m", {}).items()}
        self.v = {k: np.asarray(v, "float64") for k, v in state.get("v", {}).items()}


def averaged_delta(weights: Mapping[str, np.ndarray], averaged: Mapping[str, np.ndarray]) -> Weights:
    """``avg(y_i) - x``: the pseudo-gradient from the sites' averaged weights."""
    return {k: np.asarray(averaged[k], "float64") - np.asarray(weights[k], "float64") for k in weights}
