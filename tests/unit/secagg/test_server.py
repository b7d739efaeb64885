"""The server's side of SecAgg+: relaying, the threshold, recovering dropouts, and the rounds it refuses."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from secagg_rounds import SITES, as_signed, route, setup, submit, top_bit, unmask, updates

from fedhealth.secagg import crypto
from fedhealth.secagg.config import SecAggConfig
from fedhealth.secagg.messages import (
    B_SHARE,
    S_SHARE,
    check_round_key,
    pair_mask_seed,
    pair_sign,
    round_key_bytes,
)
from fedhealth.secagg.server import SecAggRoundError
from fedhealth.secagg.shamir import PRIME, SHARE_BYTES, combine

FIVE = SITES[:5]
CONFIG = SecAggConfig(max_norm=10.0, bits=32)  # the masking tests read the ring as uint32
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
        "round 1: the recovered mask key of site-05 is not the one it signed",
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

_FORGED_KEY = (
    r"round {rnd}: the mask key of site-02: the signature does not match its certificate \(forged or "
    r"altered\) \(replayed from another round or forged\); refused"
)
# (which of site-02's deals, how its round key is forged or replayed, the reason the server gives)
FORGED_DEALS = [
    (deal, forgery, _FORGED_KEY.format(rnd=rnd))
    for deal, rnd in (("key deal", 1), ("next deal", 2))
    for forgery in (
        "site-02's key of another round",
        "site-03's key of the round",
        "a new key signed by site-03",
    )
]
LEAK_SIZE = 100_000


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
    routed = fed.server.routed("site-01", 1)
    assert (routed["epoch"], routed["rnd"], routed["contributors"]) == (1, 1, SITES)
    assert (
        sorted(routed["shares"][S_SHARE]) == sorted(routed["shares"][B_SHARE]) == fed.server.graph["site-01"]
    )
    # every contributor's mask key of the round, as it signed it
    assert sorted(routed["keys"]) == SITES
    root = fed.server.root_pem
    for s, key in routed["keys"].items():
        assert sorted(key) == ["s_pk", "sig"]
        s_pk = check_round_key(
            key, site=s, job="job-a", epoch=1, rnd=1, advert=fed.server.adverts[s], root_pem=root
        )
        assert s_pk == crypto.public_of(fed.sites[s].epoch.s_sk[1])
    assert fed.server.routed("site-01", 1) == routed  # relayed alike every time


def test_accept_masked_refusals(fed) -> None:
    setup(fed, 1, FIVE[:4])
    fp = CONFIG.fixed_point
    with pytest.raises(
        ValueError, match="round 1: site-05 dealt nothing for this round; its update is refused"
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


@pytest.mark.parametrize(("deal", "forgery", "message"), FORGED_DEALS)
def test_a_deal_whose_round_key_is_not_signed_for_its_round_is_refused(
    fed, deal: str, forgery: str, message: str
) -> None:
    """site-02's deal (of round 1 at the key epoch's start, or of round 2 with its unmask answer) is
    refused with the reason; the round goes on without it, exact for the four others."""
    rnd = 1 if deal == "key deal" else 2
    request = fed.server.setup_request()
    adverts = {s: fed.sites[s].advertise(**request) for s in FIVE}
    share_request, _ = fed.server.accept_adverts(adverts, rnd=1)
    deals = {s: fed.sites[s].share_keys(**share_request) for s in FIVE}
    if rnd == 2:
        assert fed.server.accept_key_deals(1, deals) == FIVE
        route(fed, 1)
        submit(fed, 1, _encoded(fed, FIVE))
        unmask_request = fed.server.unmask_request(1, deal_next=True)
        reveals = {s: fed.sites[s].reveal(**unmask_request) for s in FIVE}
        deals = {s: r["next"] for s, r in reveals.items()}
    genuine, s_pk = deals["site-02"], crypto.new_keypair()[1]
    if forgery == "site-02's key of another round":
        other = fed.sites["site-02"].deal_round(2) if rnd == 1 else fed.server.rounds[1].keys["site-02"]
        forged = {"s_pk": other["s_pk"], "sig": other["sig"]}
    elif forgery == "site-03's key of the round":
        forged = {"s_pk": deals["site-03"]["s_pk"], "sig": deals["site-03"]["sig"]}
    else:
        data = round_key_bytes(job="job-a", epoch=1, rnd=rnd, site="site-02", s_pk=s_pk)
        forged = {"s_pk": s_pk, "sig": fed.sites["site-03"].identity.sign(data)}
    deals["site-02"] = {**genuine, **forged}
    if rnd == 1:
        contributors = fed.server.accept_key_deals(1, deals)
    else:
        fed.server.accept_reveals(1, {**reveals, "site-02": {**reveals["site-02"], "next": deals["site-02"]}})
        contributors = fed.server.rounds[2].contributors
        fed.server.aggregate(1)  # round 1 itself is not affected
    assert list(fed.server.refused) == ["site-02"] and re.search(message, fed.server.refused["site-02"])
    others = [s for s in FIVE if s != "site-02"]
    assert contributors == others and sorted(fed.server.routed("site-01", rnd)["keys"]) == others
    route(fed, rnd)
    encoded = _encoded(fed, others)
    submit(fed, rnd, encoded)
    unmask(fed, rnd)
    values, weight, survivors = fed.server.aggregate(rnd)
    expected, ratio = CONFIG.fixed_point.decode(sum(encoded.values()))
    assert survivors == others and np.array_equal(values, expected) and weight == ratio


def _clipped(seed: int, size: int = LEAK_SIZE) -> np.ndarray:
    """An update of norm 10 (the clip), coordinates about 0.03."""
    x = np.random.default_rng(seed).normal(size=size)
    return x * 10.0 / np.linalg.norm(x)


def _pair_masks(server, site: str, s_sk: bytes, *, keys_of: int, rnd: int, size: int) -> np.ndarray:
    """The pairwise masks of ``site`` with its neighbours, from a mask key of ``site`` and the neighbours'
    public keys of round ``keys_of``, derived for round ``rnd``, with the signs ``site`` applies."""
    dtype = CONFIG.fixed_point.dtype
    total = np.zeros(size, dtype)
    for peer in server.graph[site]:
        peer_pk = server.rounds[keys_of].keys[peer]["s_pk"]
        p = crypto.prg(pair_mask_seed(s_sk, peer_pk, job="job-a", epoch=1, rnd=rnd), size, dtype)
        total = total + p if pair_sign(site, peer) > 0 else total - p
    return total


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_a_dropout_in_round_2_is_recovered_without_unmasking_the_sites_round_1_update(fed) -> None:
    """The leak of a mask key kept for a whole key epoch, closed by fresh mask keys every round.

    site-05 sends its masked update in round 1 (its self-mask seed is revealed, as for every survivor)
    and drops out of round 2 after the deal. Round 2 gives the exact sum of the other four: the server
    recovers site-05's round-2 mask key. The server's whole view after round 2 (every masked vector,
    every answer of both rounds, every round key, the recovered key) does not unmask site-05's round-1
    update: the recovered key is of round 2 only. Before (one mask key for the epoch: the recovered key
    was the round-1 key) the same steps gave the round-1 update exactly, as the last lines show.
    """
    fp, server, victim = CONFIG.fixed_point, fed.server, "site-05"
    xs = {s: _clipped(i) for i, s in enumerate(FIVE)}
    setup(fed, 1)
    route(fed, 1)
    round_1_key = fed.sites[victim].epoch.s_sk[1]  # site-05's secret: for the control at the end only
    encoded = {s: fp.encode(xs[s], weight=fp.max_weight) for s in FIVE}
    submit(fed, 1, encoded)
    unmask(fed, 1, deal_next=True)
    values, weight, _ = server.aggregate(1)
    expected, ratio = fp.decode(sum(encoded.values()))
    assert np.array_equal(values, expected) and weight == ratio

    route(fed, 2)
    encoded = {s: fp.encode(_clipped(10 + i), weight=fp.max_weight) for i, s in enumerate(FIVE[:4])}
    submit(fed, 2, encoded)
    request, reveals = unmask(fed, 2, deal_next=True)
    assert request["dropped"] == [victim] and all(list(r[S_SHARE]) == [victim] for r in reveals.values())
    values, weight, survivors = server.aggregate(2)
    expected, ratio = fp.decode(sum(encoded.values()))
    assert survivors == FIVE[:4] and np.array_equal(values, expected) and weight == ratio

    # the server's view: site-05's round-1 masked vector and self-mask seed, its round-2 mask key
    masked = server.rounds[1].masked[victim]
    size = masked.size
    recovered = server._recover(2, S_SHARE, victim)
    keys = {rnd: server.rounds[rnd].keys[victim]["s_pk"] for rnd in (1, 2)}
    assert crypto.public_of(recovered) == keys[2] != keys[1] == crypto.public_of(round_1_key)
    no_self_mask = masked - crypto.prg(server._recover(1, B_SHARE, victim), size, fp.dtype)
    assert abs(_pearson(as_signed(no_self_mask)[:-1], xs[victim])) < 0.02  # the pairwise masks hide it
    for keys_of in (1, 2, 3):  # every neighbour key the server holds (round 3 was dealt with the answers)
        for rnd in (1, 2):
            best = no_self_mask - _pair_masks(server, victim, recovered, keys_of=keys_of, rnd=rnd, size=size)
            assert abs(_pearson(as_signed(best)[:-1], xs[victim])) < 0.02
            assert abs(top_bit(best).mean() - 0.5) < 0.01
    # before: the key recovered in round 2 was the round-1 key, and the round-1 update came out
    before = no_self_mask - _pair_masks(server, victim, round_1_key, keys_of=1, rnd=1, size=size)
    values, ratio = fp.decode(before)
    assert ratio == pytest.approx(1.0, abs=1e-6) and np.max(np.abs(values - xs[victim])) <= fp.max_error(1)
    assert _pearson(as_signed(before)[:-1], xs[victim]) > 0.999


def test_the_others_go_on_in_the_key_epoch_after_a_dropout(fed) -> None:
    """A dropped site deals nothing more: the next rounds of the epoch are the others', exact.

    The server asks for a new key epoch after the dropout (``needs_setup``, so the site can come back);
    a caller that goes on in this epoch instead gets exact sums of the others.
    """
    setup(fed, 1)
    route(fed, 1)
    submit(fed, 1, _encoded(fed, FIVE[:4]))
    unmask(fed, 1, deal_next=True)
    assert not fed.server.needs_setup
    fed.server.aggregate(1)
    assert fed.server.needs_setup
    others = FIVE[:4]
    for rnd in (2, 3):
        assert fed.server.rounds[rnd].contributors == others
        assert fed.server.epoch == 1 and sorted(fed.server.routed("site-01", rnd)["keys"]) == others
        with pytest.raises(ValueError, match=f"round {rnd}: this site dealt nothing for it; refused"):
            fed.sites["site-05"].receive(**fed.server.routed("site-05", rnd))
        with pytest.raises(ValueError, match=f"round {rnd}: site-05 dealt nothing for this round"):
            fed.server.accept_masked(rnd, "site-05", np.zeros(1001, CONFIG.fixed_point.dtype), size=1001)
        route(fed, rnd)
        encoded = _encoded(fed, others)
        submit(fed, rnd, encoded)
        unmask(fed, rnd, deal_next=rnd < 3)
        values, weight, survivors = fed.server.aggregate(rnd)
        expected, ratio = CONFIG.fixed_point.decode(sum(encoded.values()))
        assert survivors == others and np.array_equal(values, expected) and weight == ratio
    assert 4 not in fed.server.rounds  # the last round deals nothing


def test_a_dropout_in_the_first_round_of_an_epoch_is_recovered(fed) -> None:
    setup(fed, 1)
    route(fed, 1)
    encoded = _encoded(fed, FIVE[:4])
    submit(fed, 1, encoded)
    request, reveals = unmask(fed, 1, deal_next=True)
    assert request["dropped"] == ["site-05"] and request["deal_next"] is True
    assert all(list(r[S_SHARE]) == ["site-05"] for r in reveals.values())
    assert not fed.server.needs_setup and fed.server.rounds[2].contributors == FIVE[:4]
    values, weight, survivors = fed.server.aggregate(1)
    expected, ratio = CONFIG.fixed_point.decode(sum(encoded.values()))
    assert survivors == FIVE[:4] and np.array_equal(values, expected) and weight == ratio
