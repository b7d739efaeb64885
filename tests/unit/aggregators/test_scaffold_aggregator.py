"""ScaffoldAggregator against FLARE's own SCAFFOLD aggregation, with bad contributions."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.model import make_model_learnable
from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import (
    InTimeAccumulateWeightedAggregator,
)
from nvflare.app_common.app_constant import AlgorithmConstants, AppConstants

from fedhealth.aggregators.scaffold_aggregator import ScaffoldAggregator
from fedhealth.constants import HEART_SITES

ROUND = 1
W, CTRL = AppConstants.MODEL_WEIGHTS, AlgorithmConstants.SCAFFOLD_CTRL_DIFF
COUNTS = dict(zip(HEART_SITES, (199, 172, 30, 85), strict=True))
BAD = HEART_SITES[2]
NAN = float("nan")

# (which part is broken, how, the recorded reason)
BAD_PART_CASES = [
    (
        W,
        lambda p: {**p, "net.weight": np.where(np.arange(14) < 2, NAN, p["net.weight"]).astype("float32")},
        f"{W}: Parameter net.weight has 2 non-finite value(s) (NaN or Inf) out of 14.",
    ),
    (
        CTRL,
        lambda p: {**p, "net.bias": np.array([NAN], "float32")},
        f"{CTRL}: Parameter net.bias has 1 non-finite value(s) (NaN or Inf) out of 1.",
    ),
    (
        W,
        lambda p: {**p, "net.weight": p["net.weight"].reshape(2, 7)},
        f"{W}: Parameter net.weight has shape (2, 7) but the global model's is (1, 14).",
    ),
    (
        CTRL,
        lambda p: {**p, "net.weight": p["net.weight"].reshape(14)},
        f"{CTRL}: Parameter net.weight has shape (14,) but the global model's is (1, 14).",
    ),
    (CTRL, lambda p: {"net.weight": p["net.weight"]}, f"{CTRL}: The update lacks parameter(s) net.bias"),
]


def _global() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"net.weight": rng.normal(size=(1, 14)).astype("float32"), "net.bias": np.array([0.3], "float32")}


def _contributions(seed: int = 1) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """site -> {weights, control difference}: the global weights plus a small step, a small control change."""
    rng = np.random.default_rng(seed)
    return {
        site: {
            W: {k: (v + 0.05 * rng.normal(size=v.shape)).astype("float32") for k, v in _global().items()},
            CTRL: {k: (0.01 * rng.normal(size=v.shape)).astype("float32") for k, v in _global().items()},
        }
        for site in COUNTS
    }


def _context() -> FLContext:
    fl_ctx = FLContext()
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, ROUND, private=True, sticky=True)
    fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, make_model_learnable(_global(), {}), private=True, sticky=True)
    return fl_ctx


def _result(site: str, parts: dict[str, dict[str, np.ndarray]]) -> Shareable:
    """A SCAFFOLD train result as the site executor sends it."""
    meta = {MetaKey.NUM_STEPS_CURRENT_ROUND: COUNTS[site]}
    collection = DXO(
        DataKind.COLLECTION,
        data={
            W: DXO(DataKind.WEIGHTS, data=parts[W], meta=meta),
            CTRL: DXO(DataKind.WEIGHT_DIFF, data=parts[CTRL], meta=meta),
        },
    )
    shareable = collection.to_shareable()
    shareable.set_peer_props({ReservedKey.IDENTITY_NAME: site})
    shareable.add_cookie(AppConstants.CONTRIBUTION_ROUND, ROUND)
    return shareable


def _run(aggregator, contributions) -> tuple[list[bool], dict[str, dict[str, np.ndarray]]]:
    fl_ctx = _context()
    aggregator.handle_event(EventType.START_RUN, fl_ctx)
    accepted = [aggregator.accept(_result(s, p), fl_ctx) for s, p in contributions.items()]
    out = from_shareable(aggregator.aggregate(fl_ctx))
    assert out.data_kind == DataKind.COLLECTION
    return accepted, {key: dict(dxo.data) for key, dxo in out.data.items()}


def _flare(contributions) -> dict[str, dict[str, np.ndarray]]:
    """What the heart_scaffold job aggregated before: FLARE's aggregator, unchecked."""
    flare = InTimeAccumulateWeightedAggregator(
        expected_data_kind={W: DataKind.WEIGHTS, CTRL: DataKind.WEIGHT_DIFF}
    )
    return _run(flare, contributions)[1]


def _assert_close(actual: dict, expected: dict) -> None:
    for key in expected:
        assert sorted(actual[key]) == sorted(expected[key])
        for name in expected[key]:
            np.testing.assert_allclose(actual[key][name], expected[key][name], rtol=1e-5, atol=1e-6)


def test_good_sites_give_flares_scaffold_aggregate() -> None:
    contributions = _contributions()
    accepted, out = _run(ScaffoldAggregator(), contributions)
    assert accepted == [True] * 4
    _assert_close(out, _flare(contributions))
    assert out[W]["net.weight"].dtype == np.float32


@pytest.mark.parametrize(("part", "corrupt", "reason"), BAD_PART_CASES)
def test_a_bad_part_is_rejected_and_the_others_averaged(part: str, corrupt, reason: str) -> None:
    contributions = _contributions()
    bad = {**contributions, BAD: {**contributions[BAD], part: corrupt(contributions[BAD][part])}}
    aggregator = ScaffoldAggregator()
    accepted, out = _run(aggregator, bad)
    assert accepted == [site != BAD for site in COUNTS]
    assert [(r["site"], r["round"]) for r in aggregator.rejections] == [(BAD, ROUND)]
    assert aggregator.rejections[0]["reason"].startswith(reason)
    _assert_close(out, _flare({s: p for s, p in contributions.items() if s != BAD}))
    assert all(np.isfinite(v).all() for part_data in out.values() for v in part_data.values())


def test_a_x100_weight_update_is_a_norm_outlier() -> None:
    contributions = _contributions()
    base = _global()
    blown = {k: (base[k] + 100 * (v - base[k])).astype("float32") for k, v in contributions[BAD][W].items()}
    aggregator = ScaffoldAggregator()
    accepted, out = _run(aggregator, {**contributions, BAD: {**contributions[BAD], W: blown}})
    assert accepted == [True] * 4  # the norm check needs the whole round
    assert aggregator.rejections[0]["site"] == BAD
    assert "times the median norm" in aggregator.rejections[0]["reason"]
    _assert_close(out, _flare({s: p for s, p in contributions.items() if s != BAD}))


def test_a_plain_weights_result_is_rejected_and_all_rejected_changes_nothing() -> None:
    fl_ctx = _context()
    aggregator = ScaffoldAggregator()
    plain = DXO(DataKind.WEIGHTS, data=_global()).to_shareable()
    plain.set_peer_props({ReservedKey.IDENTITY_NAME: "hungary"})
    plain.add_cookie(AppConstants.CONTRIBUTION_ROUND, ROUND)
    assert aggregator.accept(plain, fl_ctx) is False
    assert "not SCAFFOLD's collection" in aggregator.rejections[0]["reason"]
    out = from_shareable(aggregator.aggregate(fl_ctx)).data
    _assert_close({W: out[W].data}, {W: _global()})
    assert all(not np.any(v) for v in out[CTRL].data.values())


# (sites that contribute, total_sites, the share of their mean control change the variate takes)
PARTIAL_CASES = [
    (HEART_SITES, 4, 1.0),
    (HEART_SITES[:3], 4, 0.75),
    (HEART_SITES[:2], 4, 0.5),
    (HEART_SITES[:3], None, 1.0),  # FLARE's behaviour
    (HEART_SITES, 3, 1.0),  # more sites than declared: the whole mean, with a warning
]


@pytest.mark.parametrize(
    ("sites", "total", "share"), PARTIAL_CASES, ids=["4-of-4", "3-of-4", "2-of-4", "3-no-total", "4-of-3"]
)
def test_partial_participation_moves_the_control_variate_by_the_sites_share(
    sites: tuple[str, ...], total: int | None, share: float
) -> None:
    contributions = {s: p for s, p in _contributions().items() if s in sites}
    accepted, out = _run(ScaffoldAggregator(total_sites=total), contributions)
    assert accepted == [True] * len(sites)
    flare = _flare(contributions)
    _assert_close({W: out[W]}, {W: flare[W]})  # the weights are the plain mean whatever N
    _assert_close({CTRL: out[CTRL]}, {CTRL: {k: v * share for k, v in flare[CTRL].items()}})


@pytest.mark.parametrize("total", [0, -1, True])
def test_total_sites_must_be_a_positive_whole_number(total: object) -> None:
    with pytest.raises(ValueError, match="total_sites must be a whole number >= 1 or None"):
        ScaffoldAggregator(total_sites=total)  # type: ignore[arg-type]
