"""DPFedAvgAggregator with FLARE's own DXO/Shareable objects: clipped noisy mean, ε per round, budget."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey, ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import make_model_learnable
from nvflare.app_common.app_constant import AppConstants
from opacus.accountants import RDPAccountant

from fedhealth.aggregators.dp_fedavg_aggregator import DPFedAvgAggregator
from fedhealth.constants import (
    EVENT_CLIENT_DP_ROUND,
    EVENT_SITES_SAMPLED,
    PROP_CLIENT_DP_ROUND,
    PROP_SITES_SAMPLED,
)
from fedhealth.privacy.client_dp import clip_update

GLOBAL = {"w": np.zeros(4, "float32"), "b": np.array([0.5], "float32")}
UPDATES = {
    "a": np.array([3.0, 4.0, 0, 0, 0]),
    "b": np.array([0.1, 0, 0, 0, 0.2]),
    "c": np.array([0, 0, 0, 6.0, 8.0]),
}
# (args, fragment of the refusal)
BAD_ARGS = [
    ({"clip_norm": 0, "expected_sites": 2, "noise_multiplier": 1.0}, "clip_norm must be positive"),
    (
        {"clip_norm": 1, "expected_sites": 5, "total_sites": 4, "noise_multiplier": 1.0},
        "expected_sites must be",
    ),
    ({"clip_norm": 1, "expected_sites": 2}, "either target_epsilon"),
    ({"clip_norm": 1, "expected_sites": 2, "target_epsilon": 1.0}, "needs rounds"),
    (
        {"clip_norm": 1, "expected_sites": 4, "noise_multiplier": 1.0, "delta": 0.3},
        "must be below 1/total_sites",
    ),
]


def _context(round_: int) -> FLContext:
    fl_ctx = FLContext()
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, round_, private=True, sticky=True)
    fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, make_model_learnable(GLOBAL, {}), private=True, sticky=True)
    return fl_ctx


def _weights(update: np.ndarray) -> dict:
    return {
        "w": (GLOBAL["w"] + update[:4]).astype("float32"),
        "b": (GLOBAL["b"] + update[4:]).astype("float32"),
    }


def _round(aggregator: DPFedAvgAggregator, round_: int) -> dict:
    fl_ctx = _context(round_)
    for site, update in UPDATES.items():
        shareable = DXO(
            DataKind.WEIGHTS, data=_weights(update), meta={MetaKey.NUM_STEPS_CURRENT_ROUND: 10}
        ).to_shareable()
        shareable.set_peer_props({ReservedKey.IDENTITY_NAME: site})
        shareable.add_cookie(AppConstants.CONTRIBUTION_ROUND, round_)
        assert aggregator.accept(shareable, fl_ctx)
    return from_shareable(aggregator.aggregate(fl_ctx)).data


@pytest.mark.parametrize(("args", "fragment"), BAD_ARGS)
def test_bad_config_is_refused(args: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        DPFedAvgAggregator(**args)


def test_the_new_global_model_is_global_plus_the_clipped_sum_over_m_plus_noise() -> None:
    sigma, clip, m = 0.8, 1.0, 4
    aggregator = DPFedAvgAggregator(
        clip_norm=clip, expected_sites=m, noise_multiplier=sigma, delta=1e-3, seed=7
    )
    aggregator.handle_event(EventType.START_RUN, _context(0))
    out = _round(aggregator, 0)
    clipped = sum(clip_update({"u": u}, clip)[0]["u"] for u in UPDATES.values()) / m
    noise = np.random.default_rng(7)
    expected_w = GLOBAL["w"] + clipped[:4] + noise.normal(0.0, sigma * clip / m, size=4)
    expected_b = GLOBAL["b"] + clipped[4:] + noise.normal(0.0, sigma * clip / m, size=1)
    np.testing.assert_allclose(out["w"], expected_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["b"], expected_b, rtol=1e-5, atol=1e-6)
    assert aggregator.ledger[0]["sites"] == ["a", "b", "c"] and aggregator.ledger[0]["epsilon"] > 0


def test_epsilon_grows_per_round_and_the_budget_stops_releases() -> None:
    aggregator = DPFedAvgAggregator(
        clip_norm=1.0, expected_sites=3, target_epsilon=8.0, rounds=3, delta=1e-3, seed=0
    )
    aggregator.handle_event(EventType.START_RUN, _context(0))
    for r in range(3):
        _round(aggregator, r)
    epsilons = [e["epsilon"] for e in aggregator.ledger]
    assert epsilons == sorted(epsilons) and 7.8 < epsilons[-1] <= 8.0
    out = _round(aggregator, 3)  # a fourth round would pass the target: no change is released
    np.testing.assert_array_equal(out["w"], GLOBAL["w"])
    assert len(aggregator.ledger) == 3


class _Engine:
    """Records the events the aggregator fires (and a panic's reason)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def fire_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.FATAL_SYSTEM_ERROR:
            self.events.append((event_type, fl_ctx.get_prop(FLContextKey.EVENT_DATA)))
        elif event_type == EVENT_CLIENT_DP_ROUND:
            self.events.append((event_type, fl_ctx.get_prop(PROP_CLIENT_DP_ROUND)))


def _sampled(aggregator: DPFedAvgAggregator, round_: int, sampled: list[str], rate: float) -> None:
    fl_ctx = FLContext()
    draw = {"round": round_, "sampled": sampled, "connected": sorted(UPDATES), "rate": rate}
    fl_ctx.set_prop(PROP_SITES_SAMPLED, draw, private=True, sticky=False)
    aggregator.handle_event(EVENT_SITES_SAMPLED, fl_ctx)


def _engine_round(aggregator: DPFedAvgAggregator, round_: int, sites: list[str]) -> tuple[dict, _Engine]:
    engine = _Engine()
    fl_ctx = _context(round_)
    fl_ctx.set_prop(ReservedKey.ENGINE, engine, private=True, sticky=True)
    for site in sites:
        meta = {MetaKey.NUM_STEPS_CURRENT_ROUND: 10}
        shareable = DXO(DataKind.WEIGHTS, data=_weights(UPDATES[site]), meta=meta).to_shareable()
        shareable.set_peer_props({ReservedKey.IDENTITY_NAME: site})
        shareable.add_cookie(AppConstants.CONTRIBUTION_ROUND, round_)
        assert aggregator.accept(shareable, fl_ctx)
    return from_shareable(aggregator.aggregate(fl_ctx)).data, engine


def _sampled_aggregator(**kwargs: object) -> DPFedAvgAggregator:
    args = {"clip_norm": 1.0, "expected_sites": 3, "total_sites": 4, "noise_multiplier": 1.7, "seed": 0}
    aggregator = DPFedAvgAggregator(**{**args, **kwargs})
    aggregator.handle_event(EventType.START_RUN, _context(0))
    return aggregator


def test_each_sampled_round_is_accounted_at_the_rate_the_workflow_reports() -> None:
    aggregator = _sampled_aggregator()
    _sampled(aggregator, 0, ["a", "b", "c"], 0.75)
    _, engine = _engine_round(aggregator, 0, ["a", "b", "c"])
    _sampled(aggregator, 1, ["a", "b"], 1.0)  # two of two connected sites: each was sure to be taken
    _engine_round(aggregator, 1, ["a", "b"])
    assert [e["sample_rate"] for e in aggregator.ledger] == [0.75, 1.0]
    assert [e["planned_sample_rate"] for e in aggregator.ledger] == [0.75, 0.75]
    reference = RDPAccountant()
    reference.history = [(1.7, 0.75, 1), (1.7, 1.0, 1)]
    assert aggregator.ledger[-1]["epsilon"] == pytest.approx(reference.get_epsilon(1e-3), rel=1e-9)
    ((event, entry),) = engine.events  # the run recorder gets the ledger entry
    assert event == EVENT_CLIENT_DP_ROUND and entry == aggregator.ledger[0]


def test_a_round_no_workflow_sampled_is_refused_when_the_rate_is_below_1() -> None:
    aggregator = _sampled_aggregator()
    out, engine = _engine_round(aggregator, 0, ["a", "b", "c"])
    np.testing.assert_array_equal(out["w"], GLOBAL["w"])  # no change released
    assert aggregator.ledger == []
    ((event, reason),) = engine.events
    assert event == EventType.FATAL_SYSTEM_ERROR
    assert "accounts a sample rate of 0.7500 (expected_sites 3 / total_sites 4)" in reason
    assert "SampledScatterAndGather" in reason


def test_a_poisson_round_that_drew_nobody_releases_noise_and_counts() -> None:
    aggregator = _sampled_aggregator()
    _sampled(aggregator, 0, [], 0.75)
    out, _ = _engine_round(aggregator, 0, [])
    noise = np.random.default_rng(0)
    np.testing.assert_allclose(
        out["w"], GLOBAL["w"] + noise.normal(0.0, 1.7 / 3, size=4), rtol=1e-5, atol=1e-6
    )
    assert aggregator.ledger[0]["sites"] == [] and aggregator.ledger[0]["epsilon"] > 0
