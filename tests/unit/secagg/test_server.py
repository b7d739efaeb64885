"""The server's side of SecAgg+: relaying, the threshold, recovering dropouts, and the rounds it refuses."""

from __future__ import annotations

import random

import numpy as np
import pytest
from secagg_rounds import SITES, route, setup, submit, unmask, updates

from fedhealth.secagg.config import SecAggConfig
from fedhealth.secagg.server import SecAggRoundError
from fedhealth.secagg.shamir import PRIME, SHARE_BYTES, combine
from fedhealth.secagg.site import B_SHARE, S_SHARE

FIVE = SITES[:5]
CONFIG = SecAggConfig(max_norm=10.0)
WEIGHTS = {s: 100.0 * (i + 1) for i, s in enumerate(SITES)}
# (whose reveal answers arrive, which secret is forged, how, the error). Four answers give site-03's
# seed three shares (the threshold: one combination), five give it four: the server combines the
# first three and the last three. "random": site-01's share replaced by a random number, which
# combines to a value too large for a secret; "crafted": site-01's share chosen so that the first
# three combine to another 32-byte seed; "shifted": every answer's share moved by the same amount,
# so that all combinations agree on another secret.
FORGED_SHARES = [
    (FIVE, "self-mask", "random", r"round 1: the shares of site-03's secret (are invalid|disagree)"),
    (
        FIVE[:4],
        "self-mask",
        "random",
        r"the shares of site-03's secret are invalid \(the shares do not combine",
    ),
    (FIVE, "self-mask", "crafted", r"round 1: the shares of site-03's secret disagree \(a share is forged\)"),
    (
        FIVE[:4],
        "self-mask",
        "crafted",
        "the unmasked sum has norm .* above what updates clipped to 10 can reach",
    ),
    (FIVE, "self-mask", "shifted", "the unmasked sum has norm .* above what updates clipped to 10 can reach"),
    (FIVE[:4], "mask key", "random", r"round 1: the shares of site-05's secret (are invalid|disagree)"),
    (FIVE[:4], "mask key", "crafted", r"round 1: the shares of site-05's secret disagree"),
    (
        FIVE[:4],
        "mask key",
        "shifted",
        "round 1: the recovered mask key of site-05 is not the one it advertised",
    ),
]
# (what site-01 sends instead of its clipped update, the error)
BYPASSES = [
    (
        "unclipped",
        r"round 1: the unmasked sum has norm 3\d\d\.?\d* for summed weight .*above what updates clipped "
        "to 10 can reach; refused, the global model is unchanged",
    ),
    ("weight above max_weight", r"for summed weight 6\.\d+, above what updates clipped to 10 can reach"),
    ("one huge value", "above what updates clipped to 10 can reach"),
]


@pytest.fixture
def fed(federation):
    return federation(FIVE, CONFIG)


def _encoded(fed, sites: list[str], size: int = 1000) -> dict[str, np.ndarray]:
    ups = updates(sites, size=size, seed=3)
    fp = fed.config.fixed_point
    return {
        s: fp.encode(np.concatenate([ups[s]["a"].ravel(), ups[s]["b"]]), weight=WEIGHTS[s]) for s in sites
    }


def test_too_few_valid_advertisements_fail_the_set_up(fed) -> None:
    request = fed.server.setup_request()
    adverts = {s: fed.sites[s].advertise(**request) for s in FIVE[:2]}
    adverts["site-02"] = {**adverts["site-02"], "epoch": 0}
    with pytest.raises(
        SecAggRoundError,
        match=r"key epoch 1: 1 sites advertised valid keys, 2 needed; refused: \{'site-02': .*replayed",
    ):
        fed.server.accept_adverts(adverts, rnd=1)


def test_set_up_agrees_on_the_graph_and_threshold(federation) -> None:
    fed = federation(SITES, SecAggConfig(max_norm=10.0, neighbors=4))
    contributors = setup(fed, 1)
    assert contributors == SITES and fed.server.threshold == 3 and fed.server.epoch == 1
    for s in SITES:
        assert fed.sites[s].epoch.neighbours == fed.server.graph[s] and len(fed.server.graph[s]) == 4
    first, again = fed.server.routed("site-01", 1), fed.server.routed("site-01", 1)
    assert sorted(first["shares"][S_SHARE]) == sorted(first["shares"][B_SHARE]) == fed.server.graph["site-01"]
    assert S_SHARE not in again["shares"]  # the mask key's shares go once an epoch


def test_accept_masked_refusals(fed) -> None:
    setup(fed, 1, FIVE[:4])
    fp = CONFIG.fixed_point
    with pytest.raises(
        ValueError, match="round 1: site-05 dealt no self-mask for this round; its update is refused"
    ):
        fed.server.accept_masked(1, "site-05", np.zeros(11, fp.dtype), size=11)
    with pytest.raises(
        ValueError, match=r"round 1: site-01's masked update is int64 \(11,\), expected uint32 \(11,\)"
    ):
        fed.server.accept_masked(1, "site-01", np.zeros(11, np.int64), size=11)
    with pytest.raises(ValueError, match=r"is uint32 \(10,\), expected uint32 \(11,\)"):
        fed.server.accept_masked(1, "site-01", np.zeros(10, fp.dtype), size=11)
    with pytest.raises(SecAggRoundError, match="round 1: no masked update arrived"):
        fed.server.aggregate(1)


def test_too_many_dropouts_end_the_round(fed) -> None:
    setup(fed, 1)
    route(fed, 1)
    submit(fed, 1, _encoded(fed, FIVE[:2]))
    with pytest.raises(
        SecAggRoundError,
        match=r"round 1: 2 sites sent masked updates \(\['site-01', 'site-02'\]\), fewer than the threshold "
        "3; "
        "the round cannot be unmasked and the global model is unchanged",
    ):
        fed.server.unmask_request(1, deal_next=True)
    request = {"epoch": 1, "rnd": 1, "survivors": FIVE[:2], "dropped": FIVE[2:], "deal_next": False}
    for s in FIVE[:2]:
        with pytest.raises(ValueError, match="fewer than the threshold 3; no share is revealed"):
            fed.sites[s].reveal(**request)


def test_too_few_answers_to_recover_a_secret(fed) -> None:
    setup(fed, 1)
    route(fed, 1)
    submit(fed, 1, _encoded(fed, FIVE))
    request = fed.server.unmask_request(1, deal_next=False)
    fed.server.accept_reveals(1, {s: fed.sites[s].reveal(**request) for s in FIVE[:2]})
    with pytest.raises(
        SecAggRoundError,
        match=r"round 1: 1 shares of site-01's self-mask seed arrived, 3 needed; the round cannot be "
        "unmasked",
    ):
        fed.server.aggregate(1)


def _as_int(share: bytes) -> int:
    return int.from_bytes(share, "big")


def _to_share(value: int) -> bytes:
    return (value % PRIME).to_bytes(SHARE_BYTES, "big")


def _crafted(fed, reveals: dict[str, dict], kind: str, whose: str) -> bytes:
    """site-01's share such that it and the next two answers' shares combine to another 32-byte secret."""
    xs = fed.sites["site-01"].epoch.xs
    holders = sorted((xs[h], h) for h, r in reveals.items() if whose in r[kind])[:3]
    assert holders[0] == (1, "site-01")
    others = {x: reveals[h][kind][whose] for x, h in holders[1:]}

    def raw(y: int) -> int:
        return _as_int(combine({1: _to_share(y), **others}, size=SHARE_BYTES))

    c, a = raw(0), raw(1) - raw(0)  # the combination is c + a·y, linear in site-01's share
    return _to_share((_as_int(b"\x07" * 32) - c) * pow(a, -1, PRIME))


@pytest.mark.parametrize(("answering", "secret", "how", "message"), FORGED_SHARES)
def test_a_forged_share_fails_the_round(
    fed, answering: list[str], secret: str, how: str, message: str
) -> None:
    setup(fed, 1)
    route(fed, 1)
    gone = ["site-05"] if secret == "mask key" else []
    submit(fed, 1, _encoded(fed, [s for s in FIVE if s not in gone]))
    request = fed.server.unmask_request(1, deal_next=False)
    reveals = {s: fed.sites[s].reveal(**request) for s in answering}
    kind, whose = (S_SHARE, "site-05") if gone else (B_SHARE, "site-03")
    if how == "random":
        reveals["site-01"][kind][whose] = _to_share(random.Random(0).randrange(PRIME))
    elif how == "crafted":
        reveals["site-01"][kind][whose] = _crafted(fed, reveals, kind, whose)
    else:
        for r in reveals.values():
            if whose in r[kind]:
                r[kind][whose] = _to_share(_as_int(r[kind][whose]) + 12345)
    fed.server.accept_reveals(1, reveals)
    with pytest.raises(SecAggRoundError, match=message):
        fed.server.aggregate(1)


@pytest.mark.parametrize(("bypass", "message"), BYPASSES)
def test_an_update_that_bypassed_the_clip_fails_the_round(fed, bypass: str, message: str) -> None:
    """site-01 masks what ``encode`` would accept coordinate by coordinate but no clipped update can be."""
    setup(fed, 1)
    route(fed, 1)
    fp = CONFIG.fixed_point
    encoded = _encoded(fed, FIVE)
    size = encoded["site-01"].size
    if bypass == "unclipped":
        encoded["site-01"] = fp.encode(np.full(size - 1, 9.9), weight=fp.max_weight)  # norm 313
    elif bypass == "weight above max_weight":
        encoded["site-01"][-1] = np.uint32(round(6.0 * fp.weight_scale))  # a weight of 6 × max_weight
    else:
        encoded["site-01"][7] = np.uint32(2**29)  # 80 when decoded: far past the clip
    submit(fed, 1, encoded)
    unmask(fed, 1)
    with pytest.raises(SecAggRoundError, match=message):
        fed.server.aggregate(1)


def test_honest_sums_pass_the_norm_check(fed) -> None:
    setup(fed, 1)
    route(fed, 1)
    fp = CONFIG.fixed_point
    # every site exactly at the clip, all in the same direction: the largest honest sum
    x = np.full(999, 10.0 / np.sqrt(999))
    submit(fed, 1, {s: fp.encode(x, weight=fp.max_weight) for s in FIVE})
    unmask(fed, 1)
    values, weight, survivors = fed.server.aggregate(1)
    assert survivors == FIVE and weight == pytest.approx(5.0, abs=1e-6)
    assert np.linalg.norm(values) == pytest.approx(50.0, rel=1e-5)


def test_a_dropout_after_the_first_round_of_an_epoch_fails_the_round(fed) -> None:
    """Its mask key would unmask its round-1 update, whose self-mask seed the server already holds."""
    setup(fed, 1)
    route(fed, 1)
    submit(fed, 1, _encoded(fed, FIVE))
    unmask(fed, 1, deal_next=True)
    fed.server.aggregate(1)
    assert fed.server.rounds[2].contributors == FIVE and not fed.server.needs_setup
    route(fed, 2)
    submit(fed, 2, _encoded(fed, FIVE[:4]))
    with pytest.raises(
        SecAggRoundError,
        match=r"round 2: \['site-05'\] dropped out of key epoch 1 after its round\(s\) \[1\], whose "
        "self-masks were revealed: .* the global model is unchanged; the next round starts a new key epoch",
    ):
        fed.server.unmask_request(2, deal_next=True)
    assert fed.server.needs_setup
    # the next round: new keys for everyone, site-05 back, the sum exact
    assert setup(fed, 3) == FIVE and fed.server.epoch == 2
    assert {fed.sites[s].epoch.number for s in FIVE} == {2}
    route(fed, 3)
    encoded = _encoded(fed, FIVE)
    submit(fed, 3, encoded)
    unmask(fed, 3)
    values, weight, _ = fed.server.aggregate(3)
    expected, ratio = CONFIG.fixed_point.decode(sum(encoded.values()))
    assert np.array_equal(values, expected) and weight == ratio  # the masks cancel exactly in the ring


def test_a_dropout_in_the_first_round_of_an_epoch_is_recovered(fed) -> None:
    setup(fed, 1)
    route(fed, 1)
    encoded = _encoded(fed, FIVE[:4])
    submit(fed, 1, encoded)
    request, reveals = unmask(fed, 1, deal_next=True)
    assert request["dropped"] == ["site-05"] and request["deal_next"] is False
    assert all(list(r[S_SHARE]) == ["site-05"] for r in reveals.values())
    assert fed.server.needs_setup and 2 not in fed.server.rounds
    values, weight, survivors = fed.server.aggregate(1)
    expected, ratio = CONFIG.fixed_point.decode(sum(encoded.values()))
    assert survivors == FIVE[:4] and np.array_equal(values, expected) and weight == ratio
