"""The in-process runner (``fedhealth_tools.secagg.simulate``): exact weighted means, with dropouts too."""

from __future__ import annotations

import numpy as np
import pytest
from secagg_rounds import SITES, flat, tolerance, updates, weighted_mean

from fedhealth.secagg.config import SecAggConfig
from fedhealth.secagg.server import SecAggRoundError

WEIGHTS = {s: 37.0 * (i + 1) for i, s in enumerate(SITES)}
# (sites, bits, neighbours, values per update)
EXACT = [
    (4, 32, None, 100_000),
    (4, 64, None, 100_000),
    (5, 32, None, 1000),
    (16, 64, 6, 1000),
]
# (sites, neighbours, bits, who drops out after the shares went round)
DROPOUTS = [
    (5, None, 32, ["site-03"]),
    (5, None, 64, ["site-05"]),
    (7, None, 32, ["site-01", "site-07"]),
    (16, 4, 32, ["site-09"]),
]


def _check_mean(result, fp, ups: dict, sites: list[str]) -> float:
    """Asserts that the result is the weighted mean of ``sites`` within the fixed-point error."""
    expected = weighted_mean(ups, WEIGHTS, sites)
    tol = tolerance(fp, WEIGHTS, sites, float(np.max(np.abs(expected))))
    error = float(np.max(np.abs(result.mean - expected)))
    assert error <= tol
    return error


@pytest.mark.parametrize(("n", "bits", "neighbors", "size"), EXACT)
def test_the_mean_is_exact_within_the_fixed_point_error(federation, n, bits, neighbors, size) -> None:
    sites = SITES[:n]
    config = SecAggConfig(max_norm=10.0, bits=bits, neighbors=neighbors)
    fed = federation(sites, config)
    scale = min(0.01, 1.0 / np.sqrt(size))  # every update inside the clip: no site is scaled down
    ups = updates(sites, size=size, seed=n, scale=scale)
    first = fed.run_round(1, ups, WEIGHTS)
    _check_mean(first, config.fixed_point, ups, sites)
    assert first.survivors == sites and first.dropped == [] and first.setup
    assert first.weight_sum == pytest.approx(sum(WEIGHTS[s] for s in sites) / 10_000.0, rel=1e-6)
    bytes_per_value = bits // 8
    assert first.bytes_per_site > size * bytes_per_value  # at least the masked vector
    # the next round reuses the key epoch: no set-up, fresh masks, still exact
    ups2 = updates(sites, size=size, seed=n + 1, scale=scale)
    second = fed.run_round(2, ups2, WEIGHTS, last=True)
    assert not second.setup and fed.server.epoch == 1
    _check_mean(second, config.fixed_point, ups2, sites)


@pytest.mark.parametrize(("n", "neighbors", "bits", "gone"), DROPOUTS)
def test_a_dropout_after_sharing_gives_the_mean_of_the_others(federation, n, neighbors, bits, gone) -> None:
    sites = SITES[:n]
    config = SecAggConfig(max_norm=10.0, bits=bits, neighbors=neighbors)
    fed = federation(sites, config)
    ups = updates(sites, size=1000, seed=n)
    result = fed.run_round(1, ups, WEIGHTS, drop_after_sharing=gone)
    others = [s for s in sites if s not in gone]
    assert result.dropped == gone and result.survivors == others
    assert result.weight_sum == pytest.approx(sum(WEIGHTS[s] for s in others) / 10_000.0, rel=1e-6)
    _check_mean(result, config.fixed_point, ups, others)
    with_gone = weighted_mean(ups, WEIGHTS, sites)
    assert np.max(np.abs(result.mean - with_gone)) > 1e-3  # every site's update has its own offset
    # as the FLARE controller does, the round after a dropout starts a new key epoch, all sites back
    assert fed.server.needs_setup
    again = fed.run_round(2, ups, WEIGHTS)
    assert again.setup and fed.server.epoch == 2 and again.survivors == sites
    assert {site.epoch.number for site in fed.sites.values()} == {2}
    _check_mean(again, config.fixed_point, ups, sites)


@pytest.mark.parametrize(("n", "neighbors"), [(5, None), (16, 4)])
def test_a_dropout_later_in_an_epoch_is_recovered(federation, n: int, neighbors: int | None) -> None:
    """A site that sent its update in round 1 drops out of round 2: round 2 is the mean of the others."""
    sites = SITES[:n]
    config = SecAggConfig(max_norm=10.0, neighbors=neighbors)
    fed = federation(sites, config)
    ups = updates(sites, size=500)
    first = fed.run_round(1, ups, WEIGHTS)
    _check_mean(first, config.fixed_point, ups, sites)
    ups2 = updates(sites, size=500, seed=1)
    second = fed.run_round(2, ups2, WEIGHTS, drop_after_sharing=["site-04"])
    others = [s for s in sites if s != "site-04"]
    assert not second.setup and fed.server.epoch == 1
    assert second.dropped == ["site-04"] and second.survivors == others
    _check_mean(second, config.fixed_point, ups2, others)
    third = fed.run_round(3, ups, WEIGHTS)
    assert third.setup and fed.server.epoch == 2 and third.survivors == sites
    _check_mean(third, config.fixed_point, ups, sites)


def test_too_many_dropouts_end_the_round(federation) -> None:
    sites = SITES[:5]
    fed = federation(sites, SecAggConfig(max_norm=10.0))
    ups = updates(sites, size=100)
    with pytest.raises(
        SecAggRoundError,
        match=r"round 1: 2 sites sent masked updates \(\['site-01', 'site-02'\]\), fewer than the threshold "
        "3; the round cannot be unmasked and the global model is unchanged",
    ):
        fed.run_round(1, ups, WEIGHTS, drop_after_sharing=sites[2:])
    again = fed.run_round(2, ups, WEIGHTS)  # a new key epoch, every site back
    assert again.setup and fed.server.epoch == 2 and again.survivors == sites
    _check_mean(again, fed.config.fixed_point, ups, sites)


def test_updates_are_clipped_before_masking(federation) -> None:
    sites = SITES[:4]
    config = SecAggConfig(max_norm=1.0)
    fed = federation(sites, config)
    ups = updates(sites, size=400, seed=2, scale=0.01)
    ups["site-02"] = {k: 100.0 * v for k, v in ups["site-02"].items()}  # norm about 28, the clip 1
    norm = np.linalg.norm(flat(ups["site-02"]))
    assert norm > 10.0 and all(np.linalg.norm(flat(ups[s])) < 1.0 for s in sites if s != "site-02")
    clipped = {**ups, "site-02": {k: v / norm for k, v in ups["site-02"].items()}}
    _check_mean(fed.run_round(1, ups, WEIGHTS), config.fixed_point, clipped, sites)


def test_a_nan_update_is_refused_at_the_site(federation) -> None:
    sites = SITES[:4]
    fed = federation(sites, SecAggConfig(max_norm=1.0))
    ups = updates(sites, size=10)
    ups["site-03"]["b"][2] = np.nan
    with pytest.raises(ValueError, match=r"site-03's update holds NaN or infinite values in b \(1 values\)"):
        fed.run_round(1, ups, WEIGHTS)
