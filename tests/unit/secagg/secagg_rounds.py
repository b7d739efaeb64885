"""SecAgg+ rounds driven message by message, so a test can stop, alter or replay any of them.

:class:`~fedhealth_tools.secagg.simulate.InProcessSecAgg` runs whole rounds; these helpers run its
sites and server one step at a time (no FOBS: the messages are the dicts themselves).
"""

from __future__ import annotations

import numpy as np

from fedhealth.secagg.encoding import FixedPoint
from fedhealth_tools.secagg.simulate import InProcessSecAgg

SITES = [f"site-{i:02d}" for i in range(1, 17)]


def updates(sites: list[str], *, size: int, seed: int = 0, scale: float = 0.01) -> dict[str, dict]:
    """A random update per site: two layers, ``size`` values in all, each site around its own offset."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, s in enumerate(sites):
        flat = scale * (rng.normal(size=size) + i)
        out[s] = {"a": flat[: size // 2].reshape(-1, 1), "b": flat[size // 2 :]}
    return out


def flat(update: dict[str, np.ndarray]) -> np.ndarray:
    """A test update as one vector (layers in name order, as the runner flattens them)."""
    return np.concatenate([np.ravel(update[k]) for k in sorted(update)])


def weighted_mean(ups: dict[str, dict], weights: dict[str, float], sites: list[str]) -> np.ndarray:
    """The FedAvg mean of ``sites`` in float64."""
    total = sum(weights[s] for s in sites)
    return sum(weights[s] * flat(ups[s]) for s in sites) / total


def tolerance(fp: FixedPoint, weights: dict[str, float], sites: list[str], bound: float) -> float:
    """The largest error of the decoded mean: rounding of the weighted sum and of the summed weights.

    ``mean = V / W`` with ``|V - V*| <= max_error(n)`` and ``|W - W*| <= n / (2 wscale)``, so
    ``|mean - mean*| <= (max_error(n) + bound × n / (2 wscale)) / W*`` where ``bound`` bounds
    ``|mean|``; plus float64 rounding (the 64-bit ring is finer than float64).
    """
    n = len(sites)
    w = sum(fp.ratio(weights[s]) for s in sites)
    return (fp.max_error(n) + bound * n * 0.5 / fp.weight_scale) / w * 1.001 + 1e-14 * bound


def setup(fed: InProcessSecAgg, rnd: int, sites: list[str] | None = None) -> list[str]:
    """A key epoch: advertise, check, deal; returns round ``rnd``'s contributors."""
    names = sorted(sites or fed.sites)
    request = fed.server.setup_request()
    adverts = {s: fed.sites[s].advertise(**request) for s in names}
    share_request, refused = fed.server.accept_adverts(adverts, rnd=rnd)
    assert not refused
    deals = {s: fed.sites[s].share_keys(**share_request) for s in share_request["adverts"]}
    return fed.server.accept_key_deals(rnd, deals)


def route(fed: InProcessSecAgg, rnd: int) -> dict[str, dict]:
    """Every contributor opens the shares relayed to it; returns what each got."""
    routed = {s: fed.server.routed(s, rnd) for s in fed.server.rounds[rnd].contributors}
    for s, message in routed.items():
        fed.sites[s].receive(**message)
    return routed


def encode(fed: InProcessSecAgg, update: dict[str, np.ndarray], weight: float) -> np.ndarray:
    """An update (already within the clip) as ring elements."""
    return fed.config.fixed_point.encode(flat(update), weight=weight)


def submit(fed: InProcessSecAgg, rnd: int, encoded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each site in ``encoded`` masks its vector and sends it; returns the masked vectors."""
    masked = {}
    for s, vector in encoded.items():
        masked[s] = fed.sites[s].mask(vector, rnd=rnd)
        fed.server.accept_masked(rnd, s, masked[s], size=vector.size)
    return masked


def unmask(fed: InProcessSecAgg, rnd: int, *, deal_next: bool = False) -> tuple[dict, dict[str, dict]]:
    """The unmask request and every survivor's answer, accepted by the server."""
    request = fed.server.unmask_request(rnd, deal_next=deal_next)
    reveals = {s: fed.sites[s].reveal(**request) for s in request["survivors"]}
    fed.server.accept_reveals(rnd, reveals)
    return request, reveals


def as_signed(masked: np.ndarray) -> np.ndarray:
    """Ring elements read as two's-complement integers, in float64."""
    signed = {np.dtype(np.uint32): np.int32, np.dtype(np.uint64): np.int64}[masked.dtype]
    return masked.view(signed).astype(np.float64)


def top_bit(masked: np.ndarray) -> np.ndarray:
    """The most significant bit of each ring element."""
    return (masked >> np.array(masked.dtype.itemsize * 8 - 1, masked.dtype)).astype(np.float64)
