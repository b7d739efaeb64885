"""Client sampling: seeded K of N per round, Poisson per site, fewer sites connected, bad settings."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from fedhealth.algorithms.sampling import SiteSampler, check_settings, sites_per_round

SITES = ["cleveland", "hungary", "switzerland", "va_long_beach"]
# (clients_per_round, num_sites, K)
COUNTS = [(3, 4, 3), (4, 4, 4), (1, 4, 1), (0.75, 4, 3), (0.5, 5, 3), (0.01, 4, 1), (1.0, 4, 4), (0.1, 10, 1)]
# (settings, fragment of the refusal)
BAD = [
    ({"clients_per_round": 0}, "clients_per_round must be at least 1 site, got 0"),
    ({"clients_per_round": 5}, "clients_per_round 5 must be between 1 and the job's 4 sites"),
    ({"clients_per_round": 1.5}, r"clients_per_round 1.5 as a fraction must be in \(0, 1\]"),
    ({"clients_per_round": 0.0}, r"clients_per_round 0.0 as a fraction must be in \(0, 1\]"),
    ({"clients_per_round": "3"}, "must be a count .int. or a fraction"),
    ({"clients_per_round": True}, "must be a count .int. or a fraction"),
    ({"num_sites": 0}, "num_sites must be a whole number of sites >= 1, got 0"),
    ({"mode": "stratified"}, "sampling must be one of .'fixed', 'poisson'., not 'stratified'"),
    ({"seed": -1}, "sampling_seed must be a non-negative int or null, got -1"),
    ({"seed": 1.5}, "sampling_seed must be a non-negative int or null, got 1.5"),
]


def _sampler(**kwargs: object) -> SiteSampler:
    return SiteSampler(**{"clients_per_round": 3, "num_sites": 4, "seed": 11, **kwargs})


@pytest.mark.parametrize(("given", "n", "k"), COUNTS, ids=[f"{c}-of-{n}" for c, n, _ in COUNTS])
def test_k_from_a_count_or_a_fraction_rounded_up(given: float, n: int, k: int) -> None:
    assert sites_per_round(given, n) == k


@pytest.mark.parametrize(("settings", "fragment"), BAD, ids=[f for _, f in BAD])
def test_bad_settings_are_refused_with_the_setting_named(settings: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        _sampler(**settings)


def test_the_checks_without_n_refuse_what_they_can() -> None:
    check_settings(clients_per_round=7, mode="poisson", seed=None)  # a count needs N to be judged fully
    with pytest.raises(ValueError, match="at least 1 site"):
        check_settings(clients_per_round=-2, mode="fixed", seed=0)


def test_a_draw_depends_only_on_seed_round_and_the_sorted_site_names() -> None:
    first = [_sampler().sample(SITES, r) for r in range(20)]
    again = [_sampler().sample(list(reversed(SITES)), r) for r in range(20)]
    assert [d.sampled for d in first] == [d.sampled for d in again]
    assert all(len(d.sampled) == 3 and list(d.sampled) == sorted(d.sampled) for d in first)
    assert all(set(d.sampled) <= set(SITES) and d.rate == 0.75 and not d.short for d in first)
    assert len({d.sampled for d in first}) > 1  # the rounds differ
    other = [_sampler(seed=12).sample(SITES, r).sampled for r in range(20)]
    assert other != [d.sampled for d in first]
    # Pinned: a change of the generator or of the draw shows here (replays of old runs would differ).
    assert [_sampler(seed=0).sample(SITES, r).sampled for r in range(3)] == PINNED


PINNED = [
    ("hungary", "switzerland", "va_long_beach"),
    ("hungary", "switzerland", "va_long_beach"),
    ("cleveland", "hungary", "va_long_beach"),
]


def test_fixed_draws_are_uniform_over_sites_and_subsets() -> None:
    rounds = 4000
    draws = [_sampler(seed=3).sample(SITES, r).sampled for r in range(rounds)]
    per_site = Counter(s for d in draws for s in d)
    for site in SITES:
        assert per_site[site] / rounds == pytest.approx(0.75, abs=0.025), site
    subsets = Counter(draws)
    assert set(subsets) == {tuple(c) for c in combinations(SITES, 3)}
    expected = rounds / 4
    chi2 = sum((count - expected) ** 2 / expected for count in subsets.values())
    assert chi2 < 16.3  # chi-square, 3 degrees of freedom: p = 0.001


def test_poisson_takes_each_site_with_probability_q() -> None:
    rounds = 4000
    draws = [_sampler(seed=5, mode="poisson").sample(SITES, r) for r in range(rounds)]
    sizes = np.array([len(d.sampled) for d in draws])
    assert sizes.mean() == pytest.approx(3.0, abs=0.05)
    assert (sizes == 0).mean() == pytest.approx(0.25**4, abs=0.003)
    assert (sizes == 4).mean() == pytest.approx(0.75**4, abs=0.025)
    assert all(d.rate == 0.75 for d in draws)


# (connected, mode, sampled count, rate, short)
SHORT = [
    (SITES, "fixed", 3, 0.75, False),
    (SITES[:3], "fixed", 3, 1.0, True),
    (SITES[:2], "fixed", 2, 1.0, True),
    (SITES[:1], "fixed", 1, 1.0, True),
    ([*SITES, "late_site"], "fixed", 3, 0.6, False),
]


@pytest.mark.parametrize(("connected", "mode", "size", "rate", "short"), SHORT, ids=["4", "3", "2", "1", "5"])
def test_fewer_connected_sites_are_sampled_from_those_present(
    connected: list[str], mode: str, size: int, rate: float, short: bool
) -> None:
    draw = _sampler(mode=mode).sample(connected, 7)
    assert len(draw.sampled) == size and set(draw.sampled) <= set(connected)
    assert draw.rate == pytest.approx(rate) and draw.short is short
    assert draw.connected == tuple(sorted(connected)) and draw.round == 7


def test_poisson_with_fewer_sites_keeps_q_and_records_the_shortfall() -> None:
    draw = _sampler(mode="poisson").sample(SITES[:2], 0)
    assert draw.rate == 0.75 and draw.short is True and set(draw.sampled) <= set(SITES[:2])


@pytest.mark.parametrize(
    ("connected", "round_index", "fragment"),
    [
        ([], 0, "Round 0: no site is connected"),
        (["a", "b", "a"], 1, "Round 1: a site is named twice"),
        (SITES, -1, "round_index must be a non-negative int, got -1"),
    ],
    ids=["none", "twice", "negative-round"],
)
def test_bad_draws_are_refused(connected: list[str], round_index: int, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        _sampler().sample(connected, round_index)


def test_without_a_seed_each_sampler_draws_its_own_secret_sequence() -> None:
    a, b = _sampler(seed=None), _sampler(seed=None)
    assert not a.seeded
    seq_a = [a.sample(SITES, r).sampled for r in range(20)]
    assert seq_a == [a.sample(SITES, r).sampled for r in range(20)]  # fixed within a run
    assert seq_a != [b.sample(SITES, r).sampled for r in range(20)]  # equal with chance 4^-20


def test_a_draw_as_a_record_is_plain_json_data() -> None:
    record = _sampler(seed=0).sample(SITES, 0).as_record()
    assert record == {
        "round": 0,
        "sampled": list(PINNED[0]),
        "connected": SITES,
        "rate": 0.75,
        "short": False,
    }
