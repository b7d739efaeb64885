"""Client-level DP for federated averaging (DP-FedAvg; McMahan et al. 2018, "Learning Differentially
Private Recurrent Language Models"), FLARE-free.

Each site's update (its weights minus the global weights) is clipped to L2 norm ``C``; the server
averages the clipped updates with the fixed denominator ``m`` (the number of sites expected per
round) and adds Gaussian noise of standard deviation ``sigma * C / m`` to the average. One site
changes the sum by at most ``C``, so each round is a Gaussian mechanism on the set of sites; the
rounds are composed with Rényi DP (Mironov 2017) using Opacus's analysis, with sampling rate
``q = m / number of sites`` (1 when every site takes part). That analysis is of Poisson sampling (each
site in a round independently with probability q); fixed-size K-of-N sampling is accounted with the
same q as an approximation (see ``docs/privacy.md``), and a round run at another rate than planned
(fewer sites connected) is accounted at its own rate. The guarantee hides whether any one
*hospital* took part; it needs a trusted server and many sites to be useful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedhealth.privacy.budget import epsilon_of
from fedhealth.privacy.dp_sgd import noise_multiplier

Update = Mapping[str, np.ndarray]


def update_norm(update: Update) -> float:
    """Global L2 norm of an update over all its parameters."""
    return float(
        np.sqrt(sum(float(np.sum(np.square(np.asarray(v, dtype="float64")))) for v in update.values()))
    )


def clip_update(update: Update, clip_norm: float) -> tuple[dict[str, np.ndarray], float]:
    """The update scaled to norm at most ``clip_norm`` (unchanged below it), and its original norm."""
    if clip_norm <= 0:
        raise ValueError(f"clip_norm must be positive, got {clip_norm}.")
    norm = update_norm(update)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: np.asarray(v, dtype="float64") * scale for k, v in update.items()}, norm


def dp_fedavg(
    updates: Sequence[Update],
    *,
    clip_norm: float,
    noise_multiplier: float,
    expected_sites: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Sum of clipped updates over ``expected_sites``, plus N(0, (sigma C / expected_sites)^2) per coordinate.

    Raises:
        ValueError: with no update, or a non-positive ``expected_sites``.
    """
    if not updates:
        raise ValueError("DP-FedAvg needs at least one update.")
    if expected_sites < 1:
        raise ValueError(f"expected_sites must be at least 1, got {expected_sites}.")
    clipped = [clip_update(u, clip_norm)[0] for u in updates]
    std = noise_multiplier * clip_norm / expected_sites
    return {
        k: sum(c[k] for c in clipped) / expected_sites + rng.normal(0.0, std, size=np.shape(clipped[0][k]))
        for k in clipped[0]
    }


@dataclass
class ClientDPAccountant:
    """RDP accountant over rounds of DP-FedAvg.

    Args:
        noise_multiplier: sigma.
        sample_rate: fraction of the sites that take part in a round (1: all), as planned.
        delta: δ of the site-level guarantee (below 1 / number of sites).
        rounds: rounds done so far.
        off_rate: of those, the rounds run at another sampling rate than planned (rate -> rounds),
            e.g. a round with fewer sites connected, where every connected site was more likely taken.
    """

    noise_multiplier: float
    sample_rate: float
    delta: float
    rounds: int = 0
    off_rate: dict[float, int] = field(default_factory=dict)

    def step(self, sample_rate: float | None = None) -> None:
        """One round done, at ``sample_rate`` (default: the planned rate)."""
        _check_rate(sample_rate)
        self.rounds += 1
        if sample_rate is not None and sample_rate != self.sample_rate:
            self.off_rate[sample_rate] = self.off_rate.get(sample_rate, 0) + 1

    def epsilon(self, rounds: int | None = None) -> float:
        """ε after the rounds done so far; with ``rounds``: after that many rounds at the planned rate."""
        if rounds is not None:
            return self._epsilon({self.sample_rate: rounds})
        return self._epsilon(self._history())

    def epsilon_after(self, sample_rate: float | None = None) -> float:
        """ε if one more round ran now at ``sample_rate`` (default: the planned rate)."""
        _check_rate(sample_rate)
        history = self._history()
        rate = self.sample_rate if sample_rate is None else sample_rate
        history[rate] = history.get(rate, 0) + 1
        return self._epsilon(history)

    def _history(self) -> dict[float, int]:
        planned = self.rounds - sum(self.off_rate.values())
        return {self.sample_rate: planned, **self.off_rate}

    def _epsilon(self, history: dict[float, int]) -> float:
        steps = [(self.noise_multiplier, q, r) for q, r in history.items() if r > 0]
        return epsilon_of(steps, mechanism="rdp", delta=self.delta) if steps else 0.0


def _check_rate(sample_rate: float | None) -> None:
    if sample_rate is not None and not 0 < sample_rate <= 1:
        raise ValueError(f"A round's sample rate must be in (0, 1], got {sample_rate}.")


def client_noise_multiplier(
    *, target_epsilon: float, delta: float, rounds: int, sample_rate: float = 1.0
) -> float:
    """The sigma with which ``rounds`` rounds of DP-FedAvg end at ``target_epsilon`` (Opacus's search)."""
    return noise_multiplier(target_epsilon, delta, sample_rate, rounds, "rdp")
