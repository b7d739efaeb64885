"""SecAgg+ rounds among in-process sites: the kit's protocol code, every message serialized as FLARE does.

The benchmark's runner for 16 sites (FLARE's simulator starts a process per client per round, see
the FLARE notes) and the tests' federation: each site is a :class:`~fedhealth.secagg.site.SecAggSite`
with its own certificate from a throw-away root CA, the server a
:class:`~fedhealth.secagg.server.SecAggServer`; every message between them is serialized with FLARE's
FOBS (what FLARE puts on the wire) and its bytes are counted for the sender and the receiver. The
sites run one after another in one process, so a round's time is the sum of every site's work.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
from nvflare.fuel.utils import fobs

from fedhealth.filters.wire import register_decomposers
from fedhealth.privacy.update_guard import guard_update
from fedhealth.secagg.config import SecAggConfig
from fedhealth.secagg.encoding import flatten
from fedhealth.secagg.server import SecAggServer
from fedhealth.secagg.site import SecAggSite
from fedhealth_tools.secagg.pki import make_pki


@dataclass
class RoundResult:
    """One round: the weighted mean update, who was in it, and what it cost."""

    mean: np.ndarray
    weight_sum: float
    survivors: list[str]
    dropped: list[str]
    seconds: float
    bytes_per_site: float
    setup: bool


class InProcessSecAgg:
    """A federation of ``sites`` running SecAgg+ rounds in this process.

    Args:
        sites: the site names.
        config: the job's SecAgg settings (shared by server and sites).
        job: the job id bound into signatures and shares.
    """

    def __init__(self, sites: list[str], config: SecAggConfig, *, job: str = "inprocess") -> None:
        register_decomposers()
        root, ids = make_pki(list(sites))
        self.config = config
        self.sites = {s: SecAggSite(name=s, job=job, config=config, identity=ids[s]) for s in sites}
        self.server = SecAggServer(job=job, config=config, root_pem=root, min_sites=2)
        self.bytes: dict[str, int] = defaultdict(int)

    def _send(self, site: str, message: object) -> object:
        """``message`` through FOBS, its bytes counted for ``site`` (sender or receiver)."""
        wire = fobs.dumps(message)
        self.bytes[site] += len(wire)
        return fobs.loads(wire)

    def _setup(self, rnd: int, sites: list[str]) -> None:
        request = self.server.setup_request()
        adverts = {s: self._send(s, self.sites[s].advertise(**self._send(s, request))) for s in sites}
        share_request, _ = self.server.accept_adverts(adverts, rnd=rnd)
        deals = {
            s: self._send(s, self.sites[s].share_keys(**self._send(s, share_request)))
            for s in share_request["adverts"]
        }
        self.server.accept_key_deals(rnd, deals)

    def run_round(
        self,
        rnd: int,
        updates: Mapping[str, Mapping[str, np.ndarray]],
        weights: Mapping[str, float],
        *,
        drop_after_sharing: Collection[str] = (),
        last: bool = False,
    ) -> RoundResult:
        """One FedAvg round under SecAgg+; sites in ``drop_after_sharing`` never send their masked update.

        The round after one with a dropout, or after one that failed (``SecAggRoundError``),
        starts a new key epoch (the server's :attr:`~fedhealth.secagg.server.SecAggServer.needs_setup`).
        """
        self.bytes.clear()
        start = time.perf_counter()
        setup = self.server.needs_setup
        if setup:
            self._setup(rnd, sorted(updates))
        contributors = self.server.rounds[rnd].contributors
        fp = self.config.fixed_point
        names = sorted(next(iter(updates.values())))
        size = sum(int(np.size(updates[contributors[0]][n])) for n in names) + 1
        for s in contributors:
            routed = self._send(s, self.server.routed(s, rnd))
            self.sites[s].receive(**routed)
            if s in drop_after_sharing:
                continue
            guarded = guard_update(updates[s], max_norm=fp.max_norm, where=f"{s}'s update")
            masked = self.sites[s].mask(fp.encode(flatten(guarded.update, names), weight=weights[s]), rnd=rnd)
            wire = self._send(s, fp.to_wire(masked))  # bits / 8 bytes a value, as the FLARE filter sends
            self.server.accept_masked(rnd, s, fp.from_wire(wire, size=size), size=size)
        request = self.server.unmask_request(rnd, deal_next=not last)
        reveals = {}
        for s in request["survivors"]:
            reveals[s] = self._send(s, self.sites[s].reveal(**self._send(s, request)))
        self.server.accept_reveals(rnd, reveals)
        values, weight, survivors = self.server.aggregate(rnd)
        seconds = time.perf_counter() - start
        return RoundResult(
            mean=values / weight,
            weight_sum=weight,
            survivors=survivors,
            dropped=request["dropped"],
            seconds=seconds,
            bytes_per_site=sum(self.bytes.values()) / len(updates),
            setup=setup,
        )
