"""A site's side of SecAgg+: what it sends is masked, what a coalition below the threshold can learn, and
every message it refuses (replayed or forged keys and shares, a server asking for too much)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from secagg_rounds import SITES, as_signed, route, setup, submit, top_bit, unmask

from fedhealth.secagg import crypto, shamir
from fedhealth.secagg.config import SecAggConfig
from fedhealth.secagg.identity import verify_signed
from fedhealth.secagg.messages import (
    B_SHARE,
    S_SHARE,
    advert_bytes,
    check_round_key,
    pair_mask_seed,
    pair_sign,
    round_key_bytes,
)
from fedhealth.secagg.shamir import SHARE_BYTES
from fedhealth.secagg.site import SecAggSite

FIVE = SITES[:5]
SIZE = 100_000
CONFIG = SecAggConfig(max_norm=10.0, bits=32)  # the masking tests read the ring as uint32
# (a change to the server's settings, as the advertise request carries them)
OTHER_SETTINGS = [
    {"max_norm": 1.0},
    {"bits": 64},
    {"max_sites": 8},
    {"max_weight": 5.0},
    {"threshold": 3},
    {"neighbors": 2},
]
# (how site-02's key advertisement in the roster is forged or replayed, the refusal's message)
FORGED_ADVERTS = [
    (
        "from the previous key epoch",
        r"site-02 is for site 'site-02', job 'job-a', epoch 1, not site-02/job-a/2: replayed or forged",
    ),
    ("from another job", r"job 'job-b', epoch 2, not site-02/job-a/2: replayed or forged"),
    (
        "of another site",
        r"is for site 'site-03', job 'job-a', epoch 2, not site-02/job-a/2: replayed or forged",
    ),
    (
        "signed by another site",
        r"site-02: the signature does not match its certificate \(forged or altered\)",
    ),
    ("keys swapped by the server", "site-02: the signature does not match its certificate"),
    ("certificate of another root CA", "site-02: its certificate was not issued by the project's root CA"),
]
# (how site-01's routed message of round 2 is altered, the refusal's message)
ALTERED_SHARES = [
    ("replayed from round 1", "round 2: the b share from site-03 does not authenticate"),
    ("one byte altered", "round 2: the b share from site-03 does not authenticate"),
    ("sealed for another site", "round 2: the b share from site-03 does not authenticate"),
    ("mask key share of round 1", "round 2: the s share from site-03 does not authenticate"),
    ("unknown kind", r"round 2: unknown share kind 'x'; refused"),
    ("unknown contributor", r"round 2: contributors \['site-16'\] are not in this epoch's roster; refused"),
    ("round never dealt", "round 3: this site dealt nothing for it; refused"),
    ("round 1's whole message", "round 1: this site dealt nothing for it; refused"),
    ("previous key epoch", "a message of key epoch 0, this site is in epoch 1: replayed or stale; refused"),
]
_FORGED_KEY = (
    r"round 2: the mask key of site-03: the signature does not match its certificate \(forged or altered\)"
)
# (how the server relays round 2's mask keys to site-01, the refusal's message)
FORGED_ROUND_KEYS = [
    ("site-03's key of round 1", _FORGED_KEY + r" \(replayed from another round or forged\); refused"),
    ("site-03's key swapped with site-04's", _FORGED_KEY),
    ("a new key signed by another site", _FORGED_KEY),
    ("site-03's own signature for another job", _FORGED_KEY),
    ("site-03's own signature for another key epoch", _FORGED_KEY),
    ("no key of site-03", r"round 2: no mask key of \['site-03'\]; refused"),
    ("site-01's own key replaced", "round 2: the relayed mask key of this site is not its own; refused"),
    ("site-01's own key of round 1", "round 2: the relayed mask key of this site is not its own; refused"),
]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _update(seed: int, size: int = SIZE) -> np.ndarray:
    """An update of norm 10 (the clip), coordinates about 0.03."""
    x = np.random.default_rng(seed).normal(size=size)
    return x * 10.0 / np.linalg.norm(x)


@pytest.fixture
def fed(federation):
    return federation(FIVE, CONFIG)


def _one_round(fed, rnd: int = 1, *, size: int = 10, drop: tuple[str, ...] = ()) -> dict:
    """Set-up (if needed), routing and masking of round ``rnd``; returns the encoded updates."""
    if fed.server.needs_setup:
        setup(fed, rnd)
    route(fed, rnd)
    fp = CONFIG.fixed_point
    encoded = {s: fp.encode(_update(i, size) / 10, weight=100.0) for i, s in enumerate(FIVE) if s not in drop}
    submit(fed, rnd, encoded)
    return encoded


def test_the_identity_must_be_the_sites(pki) -> None:
    with pytest.raises(ValueError, match="the identity is for 'site-02', not for site 'site-01'"):
        SecAggSite(name="site-01", job="job-a", config=CONFIG, identity=pki[1]["site-02"])


def test_the_advertisement_is_signed(pki, fed) -> None:
    """It carries the share-sealing key only: the mask keys are dealt round by round."""
    ad = fed.sites["site-01"].advertise(epoch=7, config=CONFIG.as_dict())
    assert sorted(ad) == ["c_pk", "cert", "epoch", "job", "sig", "site"]
    assert (ad["site"], ad["job"], ad["epoch"]) == ("site-01", "job-a", 7) and len(ad["c_pk"]) == 32
    identity = pki[1]["site-01"]
    assert ad["cert"] == identity.cert_pem
    data = advert_bytes(job="job-a", epoch=7, site="site-01", c_pk=ad["c_pk"])
    verify_signed(
        name="site-01", data=data, signature=ad["sig"], cert_pem=ad["cert"], root_pem=identity.root_pem
    )


def test_every_round_has_a_fresh_mask_key_signed_for_that_round(fed) -> None:
    """The deal of round 1 (``share_keys``) and of round 2 (``deal_round``): two keys, each signed for its
    round only; a round is dealt once."""
    request = fed.server.setup_request()
    adverts = {s: fed.sites[s].advertise(**request) for s in FIVE}
    share_request, _ = fed.server.accept_adverts(adverts, rnd=1)
    site = fed.sites["site-01"]
    first = site.share_keys(**share_request)
    second = site.deal_round(2)
    assert sorted(first) == sorted(second) == ["b", "s", "s_pk", "sig"]
    assert len(first["s_pk"]) == 32 and first["s_pk"] != second["s_pk"] != adverts["site-01"]["c_pk"]
    assert crypto.public_of(site.epoch.s_sk[1]) == first["s_pk"]
    assert site.epoch.seeds[1] != site.epoch.seeds[2]
    check = {"site": "site-01", "job": "job-a", "epoch": 1, "advert": adverts["site-01"]}
    assert check_round_key(first, rnd=1, root_pem=site.identity.root_pem, **check) == first["s_pk"]
    assert check_round_key(second, rnd=2, root_pem=site.identity.root_pem, **check) == second["s_pk"]
    with pytest.raises(
        ValueError,
        match=r"round 2: the mask key of site-01: the signature does not match its certificate \(forged or "
        r"altered\) \(replayed from another round or forged\); refused",
    ):
        check_round_key(first, rnd=2, root_pem=site.identity.root_pem, **check)
    for rnd in (1, 2):
        with pytest.raises(ValueError, match=f"round {rnd} was already dealt at this site; refused"):
            site.deal_round(rnd)


@pytest.mark.parametrize("changes", OTHER_SETTINGS)
def test_advertise_refuses_other_settings(fed, changes: dict) -> None:
    with pytest.raises(
        ValueError, match=r"the server's SecAgg settings .* differ from this site's .*; refused"
    ):
        fed.sites["site-01"].advertise(epoch=1, config={**CONFIG.as_dict(), **changes})
    assert fed.sites["site-01"].epoch is None


@pytest.mark.parametrize(("forgery", "message"), FORGED_ADVERTS)
def test_a_replayed_or_forged_advertisement_is_refused(
    fed, federation, other_pki, forgery: str, message: str
) -> None:
    """By the server (its refused list names the site) and by every site in ``share_keys``."""
    first = fed.server.setup_request()
    old = fed.sites["site-02"].advertise(**first)
    request = fed.server.setup_request()
    adverts = {s: fed.sites[s].advertise(**request) for s in FIVE}
    genuine = adverts["site-02"]
    if forgery == "from the previous key epoch":
        forged = old
    elif forgery == "from another job":
        forged = federation(FIVE, CONFIG, job="job-b").sites["site-02"].advertise(**request)
    elif forgery == "of another site":
        forged = adverts["site-03"]
    elif forgery == "signed by another site":
        data = advert_bytes(job="job-a", epoch=2, site="site-02", c_pk=genuine["c_pk"])
        forged = {**genuine, "sig": fed.sites["site-03"].identity.sign(data)}
    elif forgery == "keys swapped by the server":
        forged = {**genuine, "c_pk": crypto.new_keypair()[1]}
    else:
        impostor = SecAggSite(name="site-02", job="job-a", config=CONFIG, identity=other_pki[1]["site-02"])
        forged = impostor.advertise(**request)
    roster = {**adverts, "site-02": forged}
    share_request, refused = fed.server.accept_adverts(roster, rnd=1)
    assert list(refused) == ["site-02"] and re.search(message, refused["site-02"])
    assert sorted(share_request["adverts"]) == ["site-01", "site-03", "site-04", "site-05"]
    for site in ("site-01", "site-04"):
        with pytest.raises(ValueError, match=message):
            fed.sites[site].share_keys(epoch=2, adverts=roster, graph_seed=1, rnd=1)


def test_share_keys_refuses_a_roster_without_this_sites_keys(fed) -> None:
    request = fed.server.setup_request()
    adverts = {s: fed.sites[s].advertise(**request) for s in FIVE}
    site = fed.sites["site-01"]
    with pytest.raises(
        ValueError, match="does not hold this site's own advertisement of this epoch; refused"
    ):
        site.share_keys(
            epoch=1, adverts={k: v for k, v in adverts.items() if k != "site-01"}, graph_seed=1, rnd=1
        )
    old = dict(adverts["site-01"])
    site.advertise(**request)  # new keys: the roster's advertisement of site-01 is now stale
    with pytest.raises(ValueError, match="does not hold this site's own advertisement"):
        site.share_keys(epoch=1, adverts={**adverts, "site-01": old}, graph_seed=1, rnd=1)
    with pytest.raises(
        ValueError, match="a message of key epoch 2, this site is in epoch 1: replayed or stale"
    ):
        site.share_keys(epoch=2, adverts=adverts, graph_seed=1, rnd=1)


def test_the_deal_shares_each_secret_among_the_neighbours(fed) -> None:
    request = fed.server.setup_request()
    adverts = {s: fed.sites[s].advertise(**request) for s in FIVE}
    share_request, _ = fed.server.accept_adverts(adverts, rnd=1)
    deal = fed.sites["site-01"].share_keys(**share_request)
    assert sorted(deal[S_SHARE]) == sorted(deal[B_SHARE]) == ["site-02", "site-03", "site-04", "site-05"]
    sealed = deal[S_SHARE]["site-02"]
    assert len(sealed) == crypto.NONCE_BYTES + SHARE_BYTES + 16
    ep = fed.sites["site-01"].epoch
    assert ep.threshold == 3 and ep.xs == {s: i + 1 for i, s in enumerate(FIVE)}
    assert sorted(ep.seeds) == sorted(ep.s_sk) == [1]


@pytest.mark.parametrize("bits", [32, 64])
def test_what_the_server_receives_is_masked(federation, bits: int) -> None:
    """A site's masked vector differs from its encoded update everywhere and looks uniform on the ring."""
    config = SecAggConfig(max_norm=10.0, bits=bits)
    fed = federation(FIVE, config)
    setup(fed, 1)
    route(fed, 1)
    fp = config.fixed_point
    x = _update(0)
    encoded = fp.encode(x, weight=fp.max_weight)
    masked = submit(fed, 1, {"site-01": encoded})["site-01"]
    assert masked.dtype == fp.dtype and masked.shape == (SIZE + 1,)
    assert np.mean(masked != encoded) > 0.999
    assert abs(_pearson(as_signed(masked)[:-1], x)) < 0.02
    assert abs(top_bit(masked).mean() - 0.5) < 0.01
    # the same statistics on the unmasked vector: the test sees an update when there is one
    assert _pearson(as_signed(encoded)[:-1], x) > 0.999
    assert top_bit(encoded).mean() == pytest.approx(0.5, abs=0.01)  # symmetric update: sign bit balanced
    # ... but all of it in a narrow band around 0, where the masked values fill the ring
    assert np.abs(as_signed(encoded)[:-1]).max() < 2.0 ** (bits - 8)
    assert np.abs(as_signed(masked)[:-1]).mean() == pytest.approx(2.0 ** (bits - 2), rel=0.01)


def test_a_coalition_below_the_threshold_learns_nothing(fed) -> None:
    """Server + ``t - 1`` sites: their shares of a site's secrets give nothing, its update stays masked.

    Five sites, every one the others' neighbour, threshold 3. The server sees every masked vector,
    every sealed share and, as in any round, the threshold of shares of each survivor's self-mask
    seed; site-01 and site-02 collude with it and open the shares they hold of site-05's secrets.
    """
    colluders, target, honest = ["site-01", "site-02"], "site-05", ["site-03", "site-04"]
    fp = CONFIG.fixed_point
    setup(fed, 1)
    route(fed, 1)
    xs = {s: _update(i) for i, s in enumerate(FIVE)}
    masked = submit(fed, 1, {s: fp.encode(xs[s], weight=fp.max_weight) for s in FIVE})
    victim = fed.sites[target].epoch
    secrets = {S_SHARE: victim.s_sk[1], B_SHARE: victim.seeds[1]}
    # every site's round-1 mask key (what a neighbour of the target knows of its pairwise mask)
    s_sk = {s: fed.sites[s].epoch.s_sk[1] for s in FIVE}
    s_pk = fed.server.rounds[1].keys
    held = {
        kind: {fed.sites[c].epoch.xs[c]: fed.sites[c].epoch.held[(kind, 1, target)] for c in colluders}
        for kind in (S_SHARE, B_SHARE)
    }
    for kind, shares in held.items():
        assert len(shares) == fed.server.threshold - 1
        guess = shamir.combine(shares, size=SHARE_BYTES)
        assert int.from_bytes(guess, "big") != int.from_bytes(secrets[kind], "big")

    _, reveals = unmask(fed, 1)
    assert all(r[S_SHARE] == {} for r in reveals.values())  # nobody dropped: no mask key is revealed
    b = shamir.combine({fed.sites[h].epoch.xs[h]: reveals[h][B_SHARE][target] for h in FIVE if h != target})
    assert b == secrets[B_SHARE]  # the server learns every self-mask seed: that is the protocol

    def pair_mask(site: str) -> np.ndarray:
        """The pairwise mask between the target and ``site`` as the target applied it (``site`` knows it)."""
        seed = pair_mask_seed(s_sk[site], s_pk[target]["s_pk"], job="job-a", epoch=1, rnd=1)
        p = crypto.prg(seed, SIZE + 1, fp.dtype)
        return p if pair_sign(target, site) > 0 else -p

    best = masked[target] - crypto.prg(b, SIZE + 1, fp.dtype)
    for c in colluders:
        best = best - pair_mask(c)
    assert abs(_pearson(as_signed(best)[:-1], xs[target])) < 0.02
    assert abs(top_bit(best).mean() - 0.5) < 0.01
    # one honest site's mask short of the update; with both (what no coalition has) it is in the clear
    for h in honest:
        best = best - pair_mask(h)
    values, ratio = fp.decode(best)
    assert ratio == pytest.approx(1.0, abs=1e-6) and np.max(np.abs(values - xs[target])) <= fp.max_error(1)


def _round_two(fed) -> tuple[dict, dict]:
    """Round 1 masked and unmasked (dealing round 2); site-01's routed round 2 and the round-1 state."""
    _one_round(fed)
    first = fed.server.rounds[1]
    old = {"deals": first.deals, "keys": dict(first.keys), "routed": fed.server.routed("site-01", 1)}
    unmask(fed, 1, deal_next=True)
    routed = fed.server.routed("site-01", 2)
    routed["keys"] = {s: dict(k) for s, k in routed["keys"].items()}  # the server's own stays as it is
    return routed, old


@pytest.mark.parametrize(("change", "message"), ALTERED_SHARES)
def test_receive_refuses_replayed_or_altered_shares(fed, change: str, message: str) -> None:
    routed, old = _round_two(fed)
    shares, deals = routed["shares"], old["deals"]
    if change == "replayed from round 1":
        shares[B_SHARE]["site-03"] = deals["site-03"][B_SHARE]["site-01"]
    elif change == "one byte altered":
        sealed = bytearray(shares[B_SHARE]["site-03"])
        sealed[30] ^= 0x80
        shares[B_SHARE]["site-03"] = bytes(sealed)
    elif change == "sealed for another site":
        shares[B_SHARE]["site-03"] = fed.server.rounds[2].deals["site-03"][B_SHARE]["site-02"]
    elif change == "mask key share of round 1":
        shares[S_SHARE]["site-03"] = deals["site-03"][S_SHARE]["site-01"]
    elif change == "unknown kind":
        shares["x"] = {}
    elif change == "unknown contributor":
        routed["contributors"] = [*routed["contributors"], "site-16"]
    elif change == "round never dealt":
        routed["rnd"] = 3
    elif change == "round 1's whole message":
        routed = old["routed"]
    else:
        routed["epoch"] = 0
    with pytest.raises(ValueError, match=message):
        fed.sites["site-01"].receive(**routed)


@pytest.mark.parametrize(("change", "message"), FORGED_ROUND_KEYS)
def test_receive_refuses_a_replayed_or_forged_round_key(fed, change: str, message: str) -> None:
    """A server that relays another mask key than the one a site signed for this round is caught."""
    routed, old = _round_two(fed)
    keys = routed["keys"]
    s_pk = crypto.new_keypair()[1]

    def signed(identity: str, *, job: str = "job-a", epoch: int = 1) -> dict:
        data = round_key_bytes(job=job, epoch=epoch, rnd=2, site="site-03", s_pk=s_pk)
        return {"s_pk": s_pk, "sig": fed.sites[identity].identity.sign(data)}

    if change == "site-03's key of round 1":
        keys["site-03"] = old["keys"]["site-03"]
    elif change == "site-03's key swapped with site-04's":
        keys["site-03"] = keys["site-04"]
    elif change == "a new key signed by another site":
        keys["site-03"] = signed("site-04")
    elif change == "site-03's own signature for another job":
        keys["site-03"] = signed("site-03", job="job-b")
    elif change == "site-03's own signature for another key epoch":
        keys["site-03"] = signed("site-03", epoch=2)
    elif change == "no key of site-03":
        del keys["site-03"]
    elif change == "site-01's own key replaced":
        keys["site-01"] = keys["site-02"]
    else:
        keys["site-01"] = old["keys"]["site-01"]
    site = fed.sites["site-01"]
    with pytest.raises(ValueError, match=message):
        site.receive(**routed)
    assert 2 not in site.epoch.contributors and 2 not in site.epoch.s_pk  # nothing of the round is kept
    with pytest.raises(ValueError, match="round 2: no shares were received for it; refused to mask"):
        site.mask(CONFIG.fixed_point.encode(np.zeros(10), weight=1.0), rnd=2)
    site.receive(**fed.server.routed("site-01", 2))  # the genuine message still opens


def test_receive_refuses_a_share_from_a_non_neighbour(federation) -> None:
    config = SecAggConfig(max_norm=10.0, neighbors=4)
    fed = federation(SITES, config)
    setup(fed, 1)
    routed = fed.server.routed("site-01", 1)
    stranger = next(s for s in SITES if s != "site-01" and s not in fed.sites["site-01"].epoch.neighbours)
    routed["shares"][B_SHARE][stranger] = next(iter(routed["shares"][B_SHARE].values()))
    with pytest.raises(ValueError, match=f"round 1: a share from {stranger}, not a neighbour; refused"):
        fed.sites["site-01"].receive(**routed)


def test_mask_only_once_and_only_after_the_shares(fed) -> None:
    setup(fed, 1)
    site, vector = fed.sites["site-01"], CONFIG.fixed_point.encode(np.zeros(4), weight=1.0)
    with pytest.raises(ValueError, match="round 1: no shares were received for it; refused to mask"):
        site.mask(vector, rnd=1)
    site.receive(**fed.server.routed("site-01", 1))
    first = site.mask(vector, rnd=1)
    with pytest.raises(
        ValueError, match=r"round 1: an update was already masked for it \(two updates under the"
    ):
        site.mask(vector + 1, rnd=1)
    assert not np.array_equal(first, vector)


def test_reveal_answers_one_secret_per_neighbour_and_deals_the_next_round(fed) -> None:
    _one_round(fed, drop=("site-05",))
    request = fed.server.unmask_request(1, deal_next=True)
    assert request["dropped"] == ["site-05"] and request["deal_next"] is True
    site = fed.sites["site-01"]
    answer = site.reveal(**request)
    assert sorted(answer) == ["b", "next", "s"]
    assert sorted(answer[B_SHARE]) == ["site-02", "site-03", "site-04"] and list(answer[S_SHARE]) == [
        "site-05"
    ]
    # a dropout does not end the key epoch: round 2 is dealt with a fresh, signed mask key
    nxt = answer["next"]
    assert sorted(nxt[S_SHARE]) == sorted(nxt[B_SHARE]) == ["site-02", "site-03", "site-04", "site-05"]
    check = {"site": "site-01", "job": "job-a", "epoch": 1, "root_pem": site.identity.root_pem}
    s_pk = check_round_key(nxt, rnd=2, advert=fed.server.adverts["site-01"], **check)
    assert s_pk != fed.server.rounds[1].keys["site-01"]["s_pk"]
    assert sorted(site.epoch.seeds) == sorted(site.epoch.s_sk) == [2]  # round 1's secrets are forgotten
    last = fed.sites["site-02"].reveal(**{**request, "deal_next": False})
    assert last["next"] is None and list(last[S_SHARE]) == ["site-05"]


@pytest.mark.parametrize("first_as", ["survivor", "dropped"])
def test_reveal_refuses_both_secrets_of_a_neighbour_in_a_round(fed, first_as: str) -> None:
    _one_round(fed)
    site, others = fed.sites["site-01"], ["site-01", "site-02", "site-03", "site-04"]
    as_survivor = {"epoch": 1, "rnd": 1, "survivors": FIVE, "dropped": [], "deal_next": False}
    as_dropped = {"epoch": 1, "rnd": 1, "survivors": others, "dropped": ["site-05"], "deal_next": False}
    first, second = (as_survivor, as_dropped) if first_as == "survivor" else (as_dropped, as_survivor)
    site.reveal(**first)
    with pytest.raises(
        ValueError, match="round 1: site-05's other secret of this round was already revealed; refused"
    ):
        site.reveal(**second)


def test_a_dropout_in_a_later_round_reveals_that_rounds_mask_key_only(fed) -> None:
    """site-05 took part in round 1 (its self-mask seed was revealed) and dropped out in round 2.

    Its neighbours reveal their shares of its round-2 mask key, a key of round 2 only; its round-1
    mask key (which, with the round-1 self-mask seed, would unmask its round-1 update) is refused.
    """
    _one_round(fed)
    unmask(fed, 1, deal_next=True)
    _one_round(fed, 2, drop=("site-05",))
    request = fed.server.unmask_request(2, deal_next=True)
    assert request["survivors"] == FIVE[:4] and request["dropped"] == ["site-05"]
    answers = {s: fed.sites[s].reveal(**request) for s in FIVE[:4]}
    for s, answer in answers.items():
        assert list(answer[S_SHARE]) == ["site-05"]
        assert sorted(answer[B_SHARE]) == [x for x in FIVE[:4] if x != s]
    xs = fed.sites["site-01"].epoch.xs
    s_sk = shamir.combine({xs[s]: answers[s][S_SHARE]["site-05"] for s in FIVE[:3]})
    keys = {rnd: fed.server.rounds[rnd].keys["site-05"]["s_pk"] for rnd in (1, 2)}
    assert crypto.public_of(s_sk) == keys[2] != keys[1]
    for rnd, survivors in ((1, FIVE[:4]), (2, FIVE)):
        dropped = ["site-05"] if rnd == 1 else []
        again = {"epoch": 1, "rnd": rnd, "survivors": survivors, "dropped": dropped, "deal_next": False}
        for s in FIVE[:4]:
            with pytest.raises(
                ValueError, match=f"round {rnd}: site-05's other secret of this round was already revealed"
            ):
                fed.sites[s].reveal(**again)


@pytest.mark.parametrize(
    ("survivors", "dropped", "message"),
    [
        (
            FIVE[:2],
            FIVE[2:],
            r"round 1: only 2 sites sent masked updates, fewer than the threshold 3; no share is revealed",
        ),
        (FIVE, ["site-05"], r"round 1: sites \['site-05'\] are both survivors and dropped"),
        (FIVE[:4], ["site-16"], "round 1: the server names sites that were not contributors; refused"),
    ],
)
def test_reveal_refusals(fed, survivors: list[str], dropped: list[str], message: str) -> None:
    _one_round(fed)
    with pytest.raises(ValueError, match=message):
        fed.sites["site-01"].reveal(epoch=1, rnd=1, survivors=survivors, dropped=dropped, deal_next=False)
    with pytest.raises(
        ValueError, match="a message of key epoch 2, this site is in epoch 1: replayed or stale"
    ):
        fed.sites["site-01"].reveal(epoch=2, rnd=1, survivors=FIVE, dropped=[], deal_next=False)
