"""Sample-weighted averaging: fedhealth's own and FLARE's server aggregator agree."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import (
    InTimeAccumulateWeightedAggregator,
)
from nvflare.app_common.app_constant import AppConstants

from fedhealth.training.aggregation import weighted_average

# (sample counts per site, expected normalised weights)
WEIGHT_CASES = [
    ([30, 90], [0.25, 0.75]),
    ([1, 1, 2], [0.25, 0.25, 0.5]),
    ([199, 172, 30, 85], [199 / 486, 172 / 486, 30 / 486, 85 / 486]),
    ([5, 0], [1.0, 0.0]),
]
# (updates, weights, message)
ERROR_CASES = [
    ([], [], "at least one update"),
    ([{"w": np.zeros(2)}], [1, 2], "Got 1 updates but 2 weights"),
    ([{"w": np.zeros(2)}, {"w": np.zeros(2)}], [0, 0], "positive sum"),
    ([{"w": np.zeros(2)}, {"w": np.zeros(2)}], [3, -1], "non-negative"),
    ([{"w": np.zeros(2)}, {"v": np.zeros(2)}], [1, 1], "same parameter names"),
    ([{"w": np.zeros(2)}, {"w": np.zeros(2), "b": np.zeros(1)}], [1, 1], "same parameter names"),
]
# Site sample counts fed to FLARE's aggregator, as the executor reports them (n_train).
FLARE_CASES = [
    {"cleveland": 199, "hungary": 172},
    {"cleveland": 199, "hungary": 172, "switzerland": 30},
    {"site-1": 30, "site-2": 90},
]


def _updates(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "net.weight": rng.normal(size=(1, 14)).astype("float32"),
            "net.bias": rng.normal(size=1).astype("float32"),
        }
        for _ in range(n)
    ]


def _manual(updates: list[dict], weights: list[float]) -> dict[str, np.ndarray]:
    w = np.asarray(weights, dtype=float) / np.sum(weights)
    return {
        k: np.einsum("i,i...->...", w, np.stack([u[k] for u in updates]).astype(float)) for k in updates[0]
    }


@pytest.mark.parametrize(("counts", "normalised"), WEIGHT_CASES)
def test_weighted_average_weights_by_sample_count(counts: list[int], normalised: list[float]) -> None:
    # One-hot updates: the average of site i's indicator is exactly its normalised weight.
    updates = [{"w": np.eye(len(counts))[i]} for i in range(len(counts))]
    out = weighted_average(updates, counts)
    np.testing.assert_allclose(out["w"], normalised, rtol=1e-12)
    updates = _updates(len(counts))
    out = weighted_average(updates, counts)
    expected = _manual(updates, counts)
    assert set(out) == set(expected)
    for key in expected:
        np.testing.assert_allclose(out[key], expected[key], rtol=1e-12)


def test_weighted_average_of_two_sites_30_and_90() -> None:
    out = weighted_average([{"w": np.array([1.0, 10.0])}, {"w": np.array([5.0, 2.0])}], [30, 90])
    np.testing.assert_allclose(out["w"], [0.25 * 1 + 0.75 * 5, 0.25 * 10 + 0.75 * 2])


@pytest.mark.parametrize(("updates", "weights", "message"), ERROR_CASES)
def test_weighted_average_errors(updates: list, weights: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        weighted_average(updates, weights)


def _site_result(
    name: str, n_train: int, weights: dict[str, np.ndarray], contribution_round: int
) -> Shareable:
    """A train result as SiteExecutor builds it, as it reaches the server's aggregator."""
    dxo = DXO(DataKind.WEIGHTS, data=weights, meta={MetaKey.NUM_STEPS_CURRENT_ROUND: n_train})
    shareable = dxo.to_shareable()
    shareable.set_peer_props({ReservedKey.IDENTITY_NAME: name})
    shareable.add_cookie(AppConstants.CONTRIBUTION_ROUND, contribution_round)  # echoed back by the site
    return shareable


def _aggregator(fl_ctx: FLContext) -> InTimeAccumulateWeightedAggregator:
    aggregator = InTimeAccumulateWeightedAggregator(expected_data_kind="WEIGHTS")
    aggregator.handle_event(EventType.START_RUN, fl_ctx)  # the job's START_RUN sets up its DXO aggregators
    return aggregator


@pytest.mark.parametrize("counts", FLARE_CASES)
def test_flare_aggregator_matches_weighted_average(counts: dict[str, int]) -> None:
    fl_ctx = FLContext()
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, 2)
    aggregator = _aggregator(fl_ctx)
    updates = _updates(len(counts), seed=len(counts))
    for (name, n), update in zip(counts.items(), updates, strict=True):
        assert aggregator.accept(_site_result(name, n, update, contribution_round=2), fl_ctx)
    result = from_shareable(aggregator.aggregate(fl_ctx))
    assert result.data_kind == DataKind.WEIGHTS
    expected = weighted_average(updates, list(counts.values()))
    assert set(result.data) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(result.data[key], value, rtol=1e-6, atol=1e-7)
    unweighted = weighted_average(updates, [1] * len(counts))
    assert not np.allclose(result.data["net.weight"], unweighted["net.weight"], rtol=1e-3)


def test_flare_aggregator_rejects_stale_round_and_duplicates() -> None:
    fl_ctx = FLContext()
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, 1)
    aggregator = _aggregator(fl_ctx)
    a, b = _updates(2)
    assert not aggregator.accept(_site_result("site-1", 30, a, contribution_round=0), fl_ctx)
    assert aggregator.accept(_site_result("site-1", 30, a, contribution_round=1), fl_ctx)
    assert not aggregator.accept(_site_result("site-1", 30, b, contribution_round=1), fl_ctx)
    assert aggregator.accept(_site_result("site-2", 90, b, contribution_round=1), fl_ctx)
    result = from_shareable(aggregator.aggregate(fl_ctx))
    np.testing.assert_allclose(
        result.data["net.bias"], 0.25 * a["net.bias"] + 0.75 * b["net.bias"], rtol=1e-6
    )
