"""Client sampling: which sites train in a round (K of N at random, or each site with probability q).

FLARE-free. Each round's draw depends only on the seed, the round number and the sorted names of
the sites connected at the round's start, so a run can be replayed and a test can predict it.

Two modes:

- ``"fixed"``: exactly K of the N sites, uniformly without replacement (the common "K clients per
  round" of McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
  Decentralized Data").
- ``"poisson"``: each site independently with probability q = K/N, so a round's size varies (and can
  be 0). This is the sampling that Opacus's RDP analysis of the sampled Gaussian mechanism assumes
  (Mironov, Talwar and Zhang 2019), so with client-level DP its ε is exact for this mode.

When fewer than the N planned sites are connected, the round samples from those present: in
``"fixed"`` mode K of them (all of them when fewer than K), and the draw records it (``short``) with
the round's real inclusion rate, ``len(sampled) / len(connected)``, which is what a DP accountant
must use for that round.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

SAMPLING_MODES = ("fixed", "poisson")


def sites_per_round(clients_per_round: int | float, num_sites: int) -> int:
    """K from a count (an int, ``1 <= K <= num_sites``) or a fraction of ``num_sites`` (``0 < f <= 1``,
    rounded up, so at least that share takes part).

    Raises:
        ValueError: naming the setting, for a count or fraction out of range or a non-number.
    """
    if isinstance(num_sites, bool) or not isinstance(num_sites, int) or num_sites < 1:
        raise ValueError(f"num_sites must be a whole number of sites >= 1, got {num_sites!r}.")
    if isinstance(clients_per_round, bool) or not isinstance(clients_per_round, int | float):
        raise ValueError(
            "clients_per_round must be a count (int) or a fraction (float in (0, 1]), "
            f"got {clients_per_round!r}."
        )
    if _is_count(clients_per_round):
        if not 1 <= clients_per_round <= num_sites:
            raise ValueError(
                f"clients_per_round {clients_per_round} must be between 1 and the job's {num_sites} sites."
            )
        return clients_per_round
    if not 0 < clients_per_round <= 1:
        raise ValueError(
            f"clients_per_round {clients_per_round} as a fraction must be in (0, 1]; give a count as an int."
        )
    return max(1, math.ceil(clients_per_round * num_sites - 1e-9))


def check_settings(*, clients_per_round: int | float, mode: str, seed: int | None) -> None:
    """The checks that need no N: the mode, the seed, and a count K of at least 1.

    Raises:
        ValueError: naming the setting and the value.
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, not {mode!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"sampling_seed must be a non-negative int or null, got {seed!r}.")
    if not _is_count(clients_per_round):
        sites_per_round(clients_per_round, 1)  # a fraction's checks need no N
    elif clients_per_round < 1:
        raise ValueError(f"clients_per_round must be at least 1 site, got {clients_per_round}.")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RoundSample:
    """One round's draw.

    Attributes:
        round: the round number.
        sampled: the sites asked to train, sorted.
        connected: the sites connected when the round started, sorted.
        rate: each connected site's chance to be in ``sampled`` this round (the accountant's q).
        short: fewer than the N planned sites were connected (``"fixed"``: then K of those present,
            all of them when fewer than K, so ``rate`` is above K/N).
    """

    round: int
    sampled: tuple[str, ...]
    connected: tuple[str, ...]
    rate: float
    short: bool

    def as_record(self) -> dict:
        """The draw as plain JSON data for the run record."""
        return {
            "round": self.round,
            "sampled": list(self.sampled),
            "connected": list(self.connected),
            "rate": self.rate,
            "short": self.short,
        }


class SiteSampler:
    """Seeded per-round choice of the sites that train.

    Args:
        clients_per_round: K as a count, or as a fraction of ``num_sites`` (rounded up).
        num_sites: N, the sites of the job (the population the rate q = K/N refers to).
        mode: ``"fixed"`` (exactly K) or ``"poisson"`` (each site with probability K/N).
        seed: a non-negative int makes every round's draw reproducible (tests, experiments);
            ``None`` draws a fresh secret seed once (production: no one can predict the sample).
    """

    def __init__(
        self, *, clients_per_round: int | float, num_sites: int, mode: str = "fixed", seed: int | None = None
    ) -> None:
        check_settings(clients_per_round=clients_per_round, mode=mode, seed=seed)
        self.k = sites_per_round(clients_per_round, num_sites)
        self.n = num_sites
        self.mode = mode
        self.seeded = seed is not None
        self._seed = seed if seed is not None else secrets.randbits(63)

    @property
    def rate(self) -> float:
        """The planned sampling rate q = K/N."""
        return self.k / self.n

    def sample(self, connected: Iterable[str], round_index: int) -> RoundSample:
        """The sites that train in round ``round_index``, drawn from the ``connected`` ones.

        Raises:
            ValueError: no site connected, a site named twice, or a negative round.
        """
        sites = sorted(connected)
        if not sites:
            raise ValueError(f"Round {round_index}: no site is connected to sample from.")
        if len(set(sites)) != len(sites):
            raise ValueError(f"Round {round_index}: a site is named twice among the connected sites {sites}.")
        if isinstance(round_index, bool) or not isinstance(round_index, int) or round_index < 0:
            raise ValueError(f"round_index must be a non-negative int, got {round_index!r}.")
        rng = np.random.default_rng([self._seed, round_index])
        if self.mode == "poisson":
            keep = rng.random(len(sites)) < self.rate
            sampled = tuple(s for s, k in zip(sites, keep, strict=True) if k)
            rate = self.rate
        else:
            size = min(self.k, len(sites))
            sampled = tuple(sorted(rng.choice(sites, size=size, replace=False).tolist()))
            rate = size / len(sites)
        return RoundSample(round_index, sampled, tuple(sites), rate, short=len(sites) < self.n)
