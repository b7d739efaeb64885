"""RobustAggregator with real FLARE objects, as ScatterAndGather drives it."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.model import ModelLearnableKey, make_model_learnable
from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import (
    InTimeAccumulateWeightedAggregator,
)
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.shareablegenerators.full_model_shareable_generator import FullModelShareableGenerator
from scipy.stats import trim_mean

from fedhealth.aggregators.robust_aggregator import (
    EVENT_UPDATE_REJECTED,
    PROP_REJECTION,
    RobustAggregator,
)
from fedhealth.constants import HEART_SITES, META_LOCAL_STEPS
from fedhealth.shareables.scheduled_generator import ScheduledShareableGenerator
from fedhealth.training.aggregation import weighted_average
from fedhealth.training.robust import clip_by_norm, update_norm

ROUND = 2
COUNTS = dict(zip(HEART_SITES, (199, 172, 30, 85), strict=True))  # n_train, as the executor reports it
# local optimizer steps: cleveland and hungary run the job's 50, switzerland caps itself at 5
STEPS = dict(zip(HEART_SITES, (50, 50, 5, 22), strict=True))
POISONED = HEART_SITES[2]
NAN = float("nan")

# (how the poisoned site's weights are broken, the recorded reason)
BAD_PAYLOAD_CASES = [
    (
        lambda w: {**w, "net.weight": np.where(np.arange(14) < 3, NAN, w["net.weight"]).astype("float32")},
        "Parameter net.weight has 3 non-finite value(s) (NaN or Inf) out of 14.",
    ),
    (
        lambda w: {**w, "net.bias": np.array([np.inf], "float32")},
        "Parameter net.bias has 1 non-finite value(s) (NaN or Inf) out of 1.",
    ),
    (
        lambda w: {"net.weight": w["net.weight"]},
        "The update lacks parameter(s) net.bias of the global model.",
    ),
    (
        lambda w: {**w, "backdoor": np.ones(3, "float32")},
        "The update has parameter(s) backdoor that the global model does not have.",
    ),
    (
        lambda w: {**w, "net.weight": w["net.weight"].reshape(14)},
        "Parameter net.weight has shape (14,) but the global model's is (1, 14).",
    ),
    (lambda w: {}, "It holds no parameters."),
]
# (constructor arguments, error message)
INIT_ERROR_CASES = [
    ({"rule": "krum"}, "Unknown aggregation rule 'krum'"),
    ({"rule": "clipped_mean"}, "The clipped_mean rule needs clip_norm"),
    ({"rule": "clipped_mean", "clip_norm": -1.0}, "clip_norm must be positive, got -1.0."),
    ({"rule": "trimmed_mean", "trim_fraction": 0.5}, r"trim_fraction must be in \[0, 0.5\), got 0.5."),
    ({"max_norm_ratio": 0.5}, "max_norm_ratio must be at least 1 or None to turn the check off, got 0.5."),
    (
        {"expected_data_kind": "METRICS"},
        "expected_data_kind must be one of WEIGHTS, WEIGHT_DIFF, got 'METRICS'.",
    ),
]


class _Engine:
    """Stands in for the server engine: records the events fired and the rejection prop."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def fire_event(self, event_type: str, fl_ctx: FLContext) -> None:
        self.events.append((event_type, fl_ctx.get_prop(PROP_REJECTION)))


def _global() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"net.weight": rng.normal(size=(1, 14)).astype("float32"), "net.bias": np.array([0.3], "float32")}


def _site_weights(seed: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Each site's trained weights: the global weights plus a small local step."""
    rng = np.random.default_rng(seed)
    base = _global()
    return {
        site: {k: (v + 0.05 * rng.normal(size=v.shape)).astype("float32") for k, v in base.items()}
        for site in COUNTS
    }


def _scaled(weights: dict[str, np.ndarray], factor: float) -> dict[str, np.ndarray]:
    """The same weights with their update (weights - global) multiplied by ``factor``."""
    base = _global()
    return {k: (base[k] + factor * (v - base[k])).astype("float32") for k, v in weights.items()}


def _context(round_: int = ROUND) -> FLContext:
    fl_ctx = FLContext()
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, round_, private=True, sticky=True)
    fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, make_model_learnable(_global(), {}), private=True, sticky=True)
    return fl_ctx


def _result(
    site: str, weights: dict, *, round_: int = ROUND, kind: str = DataKind.WEIGHTS, steps: object = None
) -> Shareable:
    """A train result as SiteExecutor builds it, as it reaches the server's aggregator."""
    meta = {MetaKey.NUM_STEPS_CURRENT_ROUND: COUNTS.get(site, 1)}
    if steps is not None:
        meta[META_LOCAL_STEPS] = steps
    shareable = DXO(kind, data=weights, meta=meta).to_shareable()
    shareable.set_peer_props({ReservedKey.IDENTITY_NAME: site})
    shareable.add_cookie(AppConstants.CONTRIBUTION_ROUND, round_)
    return shareable


def _run(
    aggregator: RobustAggregator | InTimeAccumulateWeightedAggregator,
    weights: dict[str, dict[str, np.ndarray]],
    fl_ctx: FLContext | None = None,
    steps: dict[str, object] | None = None,
) -> tuple[dict[str, np.ndarray], list[bool]]:
    fl_ctx = fl_ctx or _context()
    aggregator.handle_event(EventType.START_RUN, fl_ctx)
    steps = steps or {}
    accepted = [
        aggregator.accept(_result(site, w, steps=steps.get(site)), fl_ctx) for site, w in weights.items()
    ]
    dxo = from_shareable(aggregator.aggregate(fl_ctx))
    assert dxo.data_kind == DataKind.WEIGHTS
    return dxo.data, accepted


def _mean_of(weights: dict[str, dict[str, np.ndarray]], sites) -> dict[str, np.ndarray]:
    return weighted_average([weights[s] for s in sites], [COUNTS[s] for s in sites])


def _assert_close(actual: dict, expected: dict, tol: float = 1e-6) -> None:
    assert set(actual) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=tol, atol=tol)


def test_all_good_sites_give_the_sample_weighted_mean_like_flare() -> None:
    weights = _site_weights()
    ours, accepted = _run(RobustAggregator(), weights)
    flare, _ = _run(InTimeAccumulateWeightedAggregator(expected_data_kind="WEIGHTS"), weights)
    assert accepted == [True] * 4
    _assert_close(ours, _mean_of(weights, COUNTS))
    _assert_close(ours, flare)
    assert all(ours[k].dtype == np.float32 for k in ours)


@pytest.mark.parametrize(("corrupt", "reason"), BAD_PAYLOAD_CASES)
def test_a_bad_payload_is_rejected_and_the_others_averaged(corrupt, reason: str) -> None:
    weights = _site_weights()
    weights[POISONED] = corrupt(weights[POISONED])
    aggregator = RobustAggregator()
    out, accepted = _run(aggregator, weights)
    assert accepted == [site != POISONED for site in COUNTS]
    assert aggregator.rejections == [{"site": POISONED, "round": ROUND, "reason": reason}]
    _assert_close(out, _mean_of(weights, [s for s in COUNTS if s != POISONED]))


def test_a_x100_update_is_rejected_as_a_norm_outlier() -> None:
    weights = _site_weights()
    weights[POISONED] = _scaled(weights[POISONED], 100.0)
    aggregator = RobustAggregator()
    out, accepted = _run(aggregator, weights)
    assert accepted == [True] * 4  # the norm check needs the whole round, so it runs in aggregate()
    assert [(r["site"], r["round"]) for r in aggregator.rejections] == [(POISONED, ROUND)]
    assert "times the median norm" in aggregator.rejections[0]["reason"]
    assert aggregator.rejections[0]["reason"].endswith("of 4 sites; at most 10 times is allowed.")
    _assert_close(out, _mean_of(weights, [s for s in COUNTS if s != POISONED]))
    unchecked, _ = _run(RobustAggregator(max_norm_ratio=None), weights)
    assert np.abs(unchecked["net.weight"] - out["net.weight"]).max() > 0.1  # the poison gets through


@pytest.mark.parametrize(("rule", "kwargs"), [("median", {}), ("trimmed_mean", {"trim_fraction": 0.25})])
def test_median_and_trimmed_mean_stay_with_the_honest_sites(rule: str, kwargs: dict) -> None:
    weights = _site_weights()
    weights[POISONED] = _scaled(weights[POISONED], -100.0)
    out, accepted = _run(RobustAggregator(rule=rule, max_norm_ratio=None, **kwargs), weights)
    assert accepted == [True] * 4
    base = _global()
    for name, value in out.items():
        updates = np.stack([weights[s][name].astype("float64") - base[name] for s in COUNTS])
        honest = np.stack([weights[s][name] for s in COUNTS if s != POISONED])
        robust = np.median(updates, axis=0) if rule == "median" else trim_mean(updates, 0.25, axis=0)
        np.testing.assert_allclose(value, base[name] + robust, rtol=1e-6, atol=1e-6)
        assert np.all(value >= honest.min(axis=0) - 1e-6) and np.all(value <= honest.max(axis=0) + 1e-6)


def test_clipped_mean_bounds_the_step_of_the_global_model() -> None:
    weights = _site_weights()
    weights[POISONED] = _scaled(weights[POISONED], 100.0)
    out, _ = _run(RobustAggregator(rule="clipped_mean", clip_norm=0.05, max_norm_ratio=None), weights)
    base = _global()
    step = {k: out[k].astype("float64") - base[k] for k in out}
    assert update_norm(step) <= 0.05 + 1e-6
    clipped = [clip_by_norm({k: w[k] - base[k] for k in w}, max_norm=0.05) for w in weights.values()]
    _assert_close(step, weighted_average(clipped, list(COUNTS.values())), tol=1e-6)


def test_all_rejected_leaves_the_global_model_unchanged() -> None:
    weights = {site: _scaled(w, NAN) for site, w in _site_weights().items()}
    aggregator = RobustAggregator()
    fl_ctx = _context()
    out, accepted = _run(aggregator, weights, fl_ctx)
    assert accepted == [False] * 4
    assert [r["site"] for r in aggregator.rejections] == list(COUNTS)
    for name, value in _global().items():
        np.testing.assert_array_equal(out[name], value)
    learnable = FullModelShareableGenerator().shareable_to_learnable(
        DXO(DataKind.WEIGHTS, data=out).to_shareable(), fl_ctx
    )
    for name, value in _global().items():
        np.testing.assert_array_equal(learnable[ModelLearnableKey.WEIGHTS][name], value)


def test_stale_round_and_duplicate_are_rejected() -> None:
    weights = _site_weights()
    site = HEART_SITES[0]
    fl_ctx = _context()
    aggregator = RobustAggregator()
    aggregator.handle_event(EventType.START_RUN, fl_ctx)
    assert not aggregator.accept(_result(site, weights[site], round_=ROUND - 1), fl_ctx)
    assert aggregator.accept(_result(site, weights[site]), fl_ctx)
    assert not aggregator.accept(_result(site, _scaled(weights[site], 3.0)), fl_ctx)
    assert not aggregator.accept(_result(site, weights[site], kind=DataKind.WEIGHT_DIFF), fl_ctx)
    assert aggregator.rejections == [
        {
            "site": site,
            "round": ROUND,
            "reason": f"It was trained for round {ROUND - 1}, not the current {ROUND}.",
        },
        {
            "site": site,
            "round": ROUND,
            "reason": f"It is a second contribution for round {ROUND}; the first was kept.",
        },
        {"site": site, "round": ROUND, "reason": "It holds WEIGHT_DIFF but WEIGHTS is expected."},
    ]
    _assert_close(from_shareable(aggregator.aggregate(fl_ctx)).data, weights[site])


def test_reset_starts_a_new_round() -> None:
    weights = _site_weights()
    aggregator = RobustAggregator()
    fl_ctx = _context()
    _run(aggregator, weights, fl_ctx)
    aggregator.reset(fl_ctx)
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, ROUND + 1, private=True, sticky=True)
    assert all(aggregator.accept(_result(s, w, round_=ROUND + 1), fl_ctx) for s, w in weights.items())
    assert aggregator.rejections == []


def test_no_global_model_rejects_and_changes_nothing() -> None:
    fl_ctx = FLContext()
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, ROUND)
    aggregator = RobustAggregator()
    site, weights = next(iter(_site_weights().items()))
    assert not aggregator.accept(_result(site, weights), fl_ctx)
    assert aggregator.rejections[0]["reason"] == "The server has no global model to check it against."
    assert from_shareable(aggregator.aggregate(fl_ctx)).data == {}


def test_each_rejection_fires_an_event_with_its_record() -> None:
    engine = _Engine()
    fl_ctx = _context()
    fl_ctx.put(key=ReservedKey.ENGINE, value=engine, private=True, sticky=False)
    weights = _site_weights()
    weights[HEART_SITES[0]] = _scaled(weights[HEART_SITES[0]], 100.0)
    weights[HEART_SITES[1]] = _scaled(weights[HEART_SITES[1]], NAN)
    aggregator = RobustAggregator()
    _run(aggregator, weights, fl_ctx)
    fired = [record for event, record in engine.events if event == EVENT_UPDATE_REJECTED]
    assert fired == aggregator.rejections
    assert [r["site"] for r in fired] == [HEART_SITES[1], HEART_SITES[0]]  # NaN at accept, norm at aggregate
    assert fl_ctx.get_prop(PROP_REJECTION) is None  # cleaned up after the event, as fire_event_with_data does


@pytest.mark.parametrize("generator", [FullModelShareableGenerator(), ScheduledShareableGenerator(lr=0.03)])
@pytest.mark.parametrize("rule", ["mean", "median"])
def test_result_plugs_into_scatter_and_gather_generator(generator, rule: str) -> None:
    weights = _site_weights(seed=3)
    weights[POISONED] = _scaled(weights[POISONED], NAN)
    fl_ctx = _context()
    aggregator = RobustAggregator(rule=rule)
    aggregator.handle_event(EventType.START_RUN, fl_ctx)
    for site, w in weights.items():
        aggregator.accept(_result(site, w), fl_ctx)
    honest = [s for s in COUNTS if s != POISONED]
    expected = (
        _mean_of(weights, honest)
        if rule == "mean"
        else {k: np.median([weights[s][k] for s in honest], axis=0) for k in _global()}
    )
    # as in ScatterAndGather: shareable_gen.shareable_to_learnable(aggregator.aggregate(fl_ctx), fl_ctx)
    learnable = generator.shareable_to_learnable(aggregator.aggregate(fl_ctx), fl_ctx)
    _assert_close(learnable[ModelLearnableKey.WEIGHTS], expected)


def test_weight_diff_contributions_give_a_weight_diff_result() -> None:
    base = _global()
    weights = _site_weights()
    diffs = {s: {k: w[k] - base[k] for k in w} for s, w in weights.items()}
    fl_ctx = _context()
    aggregator = RobustAggregator(expected_data_kind="WEIGHT_DIFF")
    aggregator.handle_event(EventType.START_RUN, fl_ctx)
    assert all(aggregator.accept(_result(s, d, kind=DataKind.WEIGHT_DIFF), fl_ctx) for s, d in diffs.items())
    result = aggregator.aggregate(fl_ctx)
    assert from_shareable(result).data_kind == DataKind.WEIGHT_DIFF
    learnable = FullModelShareableGenerator().shareable_to_learnable(result, fl_ctx)
    _assert_close(learnable[ModelLearnableKey.WEIGHTS], _mean_of(weights, COUNTS))


@pytest.mark.parametrize(("kwargs", "message"), INIT_ERROR_CASES)
def test_constructor_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RobustAggregator(**kwargs)


def test_fednova_normalizes_each_update_by_its_local_steps() -> None:
    weights = _site_weights()
    out, accepted = _run(RobustAggregator(rule="fednova"), weights, steps=STEPS)
    assert accepted == [True] * 4
    base = _global()
    p = np.array([COUNTS[s] for s in COUNTS], dtype="float64") / sum(COUNTS.values())
    tau = np.array([STEPS[s] for s in COUNTS], dtype="float64")
    tau_eff = float(np.dot(p, tau))
    assert tau_eff == pytest.approx((199 * 50 + 172 * 50 + 30 * 5 + 85 * 22) / 486)  # 42.33
    for name in base:
        deltas = [weights[s][name].astype("float64") - base[name] for s in COUNTS]
        step = tau_eff * sum(pi * d / t for pi, d, t in zip(p, deltas, tau, strict=True))
        np.testing.assert_allclose(out[name], base[name] + step, rtol=1e-6, atol=1e-6)
    fedavg, _ = _run(RobustAggregator(), weights)
    assert np.abs(fedavg["net.weight"] - out["net.weight"]).max() > 1e-3  # the capped site now counts more


def test_fednova_with_equal_steps_is_the_mean() -> None:
    weights = _site_weights(seed=4)
    out, _ = _run(RobustAggregator(rule="fednova"), weights, steps=dict.fromkeys(COUNTS, 50))
    mean, _ = _run(RobustAggregator(), weights)
    for name, value in mean.items():
        np.testing.assert_array_equal(out[name], value)


# (local steps the poisoned site reports, the recorded reason)
FEDNOVA_BAD_STEPS = [
    (
        None,
        "It carries no fedhealth_local_steps (its local optimizer steps), which the fednova rule normalizes "
        "by; the site's executor must report them.",
    ),
    (0, "Its fedhealth_local_steps 0 is not a positive number of local steps."),
    (-3, "Its fedhealth_local_steps -3 is not a positive number of local steps."),
    ("many", "Its fedhealth_local_steps 'many' is not a positive number of local steps."),
    (NAN, "Its fedhealth_local_steps nan is not a positive number of local steps."),
]


@pytest.mark.parametrize(("steps", "reason"), FEDNOVA_BAD_STEPS)
def test_fednova_rejects_a_contribution_without_usable_steps(steps: object, reason: str) -> None:
    weights = _site_weights()
    aggregator = RobustAggregator(rule="fednova")
    out, accepted = _run(aggregator, weights, steps={**STEPS, POISONED: steps})
    assert accepted == [site != POISONED for site in COUNTS]
    assert aggregator.rejections == [{"site": POISONED, "round": ROUND, "reason": reason}]
    honest = [s for s in COUNTS if s != POISONED]
    expected, _ = _run(RobustAggregator(rule="fednova"), {s: weights[s] for s in honest}, steps=STEPS)
    _assert_close(out, expected)


def test_the_mean_rule_needs_no_local_steps() -> None:
    aggregator = RobustAggregator()
    _, accepted = _run(aggregator, _site_weights())
    assert accepted == [True] * 4 and aggregator.rejections == []


def test_fednova_rejects_a_site_that_under_reports_its_steps() -> None:
    # An ordinary update claimed as 1 step (others 50) would be scaled up about 40x by FedNova; per
    # local step its norm is about 50x the median, so the norm check catches it.
    weights = _site_weights()
    aggregator = RobustAggregator(rule="fednova")
    claimed = {**dict.fromkeys(COUNTS, 50), POISONED: 1}
    out, accepted = _run(aggregator, weights, steps=claimed)
    assert accepted == [True] * 4
    assert [r["site"] for r in aggregator.rejections] == [POISONED]
    assert aggregator.rejections[0]["reason"].endswith(
        "at most 10 times is allowed. (fednova: norms per local step)"
    )
    _assert_close(out, _mean_of(weights, [s for s in COUNTS if s != POISONED]))
    unchecked, _ = _run(RobustAggregator(rule="fednova", max_norm_ratio=None), weights, steps=claimed)
    assert np.abs(unchecked["net.weight"] - out["net.weight"]).max() > 0.1  # the inflated update got through
