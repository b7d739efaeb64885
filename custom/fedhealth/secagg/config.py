"""SecAgg+ settings of a job, and the neighbour graph they imply (FLARE-free).

SecAgg+ (Bell et al. 2020) replaces SecAgg's all-pairs masking (Bonawitz et al. 2017) with a
sparse graph: each site masks with, and shares its secrets among, ``neighbors`` other sites only,
so its cost grows with log n instead of n. ``neighbors=None`` (or ``>= sites - 1``) is the complete
graph, i.e. the original SecAgg. The graph is a Harary graph over the sites in an order the server
draws each key epoch: a ring in which each site is joined to the ``neighbors / 2`` sites on each side.

Threshold: any ``threshold`` of a site's neighbours can recover its secrets (its self-mask seed if
it sent its masked update, its mask key if it dropped out), fewer learn nothing. It must be more
than half of the neighbours: each honest site reveals only one of the two secrets of a neighbour,
so the server can never gather ``threshold`` shares of both and unmask a single site's update.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fedhealth.secagg.encoding import FixedPoint


@dataclass(frozen=True)
class SecAggConfig:
    """What the server and every site of a job agree on.

    Attributes:
        max_norm: L2 bound every site clips its update to before masking.
        bits: the ring's width, 32 to 64 in whole bytes (each byte more rounds 256 times finer).
        max_sites: the most sites a round may hold (sizes the fixed-point scale).
        max_weight: the largest FedAvg weight (training rows) of a site.
        threshold: shares needed to recover a secret; None: a majority of the neighbours.
        neighbors: neighbours per site (even); None: every other site (SecAgg).
    """

    max_norm: float
    bits: int = 40
    max_sites: int = 16
    max_weight: float = 10_000.0
    threshold: int | None = None
    neighbors: int | None = None

    def __post_init__(self) -> None:
        _ = self.fixed_point  # checks bits, max_norm, max_sites, max_weight
        if self.neighbors is not None and (self.neighbors < 2 or self.neighbors % 2):
            raise ValueError(
                f"neighbors must be an even number of at least 2 or None, got {self.neighbors!r}."
            )
        if self.threshold is not None and self.threshold < 2:
            raise ValueError(f"threshold must be at least 2 or None, got {self.threshold!r}.")

    @property
    def fixed_point(self) -> FixedPoint:
        """The job's fixed-point encoding."""
        return FixedPoint(
            bits=int(self.bits),
            max_norm=float(self.max_norm),
            max_sites=int(self.max_sites),
            max_weight=float(self.max_weight),
        )

    def degree(self, sites: int) -> int:
        """Neighbours per site among ``sites``."""
        full = sites - 1
        return full if self.neighbors is None else min(int(self.neighbors), full)

    def threshold_for(self, sites: int) -> int:
        """Shares that recover a secret among ``sites``; refused if not a majority of the neighbours."""
        k = self.degree(sites)
        t = k // 2 + 1 if self.threshold is None else int(self.threshold)
        if not k // 2 < t <= k:
            raise ValueError(
                f"threshold {t} with {k} neighbours per site: it must be more than half of them and at "
                f"most all of them ({k // 2 + 1}..{k}), or the server could unmask one site's update."
            )
        return t

    def as_dict(self) -> dict:
        """The settings as plain data (sent with the protocol requests and checked by the sites)."""
        return asdict(self)


def neighbour_graph(sites: list[str], *, degree: int, seed: int) -> dict[str, list[str]]:
    """Each site's neighbours: a Harary graph on the sites in an order drawn from ``seed``."""
    names = sorted(sites)
    n = len(names)
    if degree >= n - 1:
        return {s: [t for t in names if t != s] for s in names}
    order = [names[i] for i in np.random.default_rng(seed).permutation(n)]
    pos = {s: i for i, s in enumerate(order)}
    half = degree // 2
    return {s: sorted({order[(pos[s] + d) % n] for d in range(-half, half + 1) if d} - {s}) for s in names}
