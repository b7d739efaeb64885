"""FedAvg (McMahan et al. 2017) and FedProx (Li et al. 2020): the plain local round, or with a proximal term.

FedProx adds ``mu / 2 * ||w - w_global||^2`` to each site's loss; the task's training loop applies it
from the round's ``mu`` (:class:`fedhealth.training.loops.LocalTrainConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fedhealth.client.base import ClientAlgorithm, RoundState, register_algorithm
from fedhealth.training.loops import LocalTrainConfig


@register_algorithm
@dataclass(frozen=True)
class FedAvg(ClientAlgorithm):
    """The plain local round (the default: a job that lists no algorithm trains FedAvg)."""

    name = "fedavg"


@register_algorithm
@dataclass(frozen=True)
class FedProx(ClientAlgorithm):
    """FedProx's proximal term.

    Args:
        mu: the proximal weight (0 is FedAvg).
    """

    mu: float
    name = "fedprox"

    def __post_init__(self) -> None:
        if not self.mu >= 0:
            raise ValueError(f"fedprox mu must be non-negative, got {self.mu}.")

    def configure(self, config: LocalTrainConfig, state: RoundState) -> LocalTrainConfig:
        return replace(config, mu=float(self.mu))
