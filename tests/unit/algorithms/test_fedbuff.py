"""FedBuff's buffer (Nguyen et al. 2022): staleness weights, the server step by hand, drops and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.algorithms.fedbuff import FedBuff, FedBuffConfig, FedBuffUpdateError, staleness_weight

START = {"w": np.array([1.0, 2.0]), "b": np.array([0.5])}
# (staleness, exponent, (1 + s) ** -a)
WEIGHTS = [(0, 0.5, 1.0), (3, 0.5, 0.5), (8, 0.5, 1 / 3), (1, 1.0, 0.5), (4, 0.0, 1.0), (3, 2.0, 1 / 16)]
BAD_CONFIGS = [
    ({"buffer_size": 0}, "buffer_size must be a whole number of at least 1"),
    ({"buffer_size": True}, "buffer_size must be a whole number"),
    ({"buffer_size": 2, "staleness_exponent": -0.5}, "staleness_exponent must be 0 or more"),
    ({"buffer_size": 2, "max_staleness": -1}, "max_staleness must be a whole number >= 0 or None"),
    ({"buffer_size": 2, "server_lr": 0.0}, "server_lr must be positive"),
    ({"buffer_size": 2, "max_update_norm": float("nan")}, "max_update_norm must be positive or None"),
]


def _plus(delta_w: list[float], delta_b: float, base: dict = START) -> dict[str, np.ndarray]:
    return {"w": base["w"] + np.array(delta_w), "b": base["b"] + np.array([delta_b])}


@pytest.mark.parametrize(("staleness", "exponent", "expected"), WEIGHTS)
def test_staleness_weight_is_polynomial(staleness, exponent, expected):
    assert staleness_weight(staleness, exponent) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("kwargs", "message"), BAD_CONFIGS)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FedBuffConfig(**kwargs)


def test_fresh_buffer_with_server_lr_one_is_fedavg():
    fb = FedBuff(START, FedBuffConfig(buffer_size=2, staleness_exponent=0.5))
    assert (fb.checkout("a"), fb.checkout("b")) == (0, 0)
    first = fb.submit("a", weights=_plus([1.0, 0.0], 0.0), sample_weight=1)
    assert first.status == "buffered" and first.applied is None and fb.buffered == 1
    second = fb.submit("b", weights=_plus([0.0, 4.0], 2.0), sample_weight=3)
    assert second.applied is not None and second.applied.version == 1 and fb.version == 1
    # (1 * [1, 0] + 3 * [0, 4]) / 4 = [0.25, 3]; b: 3 * 2 / 4 = 1.5
    np.testing.assert_allclose(fb.model["w"], [1.25, 5.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(fb.model["b"], [2.0], rtol=0, atol=1e-12)
    assert fb.buffered == 0 and [u.site for u in fb.history[0].updates] == ["a", "b"]


def test_a_stale_update_is_weighted_down_and_not_renormalised():
    """Version 1 comes from a and b; c trained from version 0 (staleness 1), d from version 1."""
    cfg = FedBuffConfig(buffer_size=2, staleness_exponent=1.0, server_lr=0.5)
    fb = FedBuff(START, cfg)
    for site in "abc":
        fb.checkout(site)
    fb.submit("a", weights=_plus([2.0, 0.0], 0.0), sample_weight=1)
    fb.submit("b", weights=_plus([2.0, 0.0], 0.0), sample_weight=1)  # v1: w = [1 + 0.5 * 2, 2] = [2, 2]
    np.testing.assert_allclose(fb.model["w"], [2.0, 2.0], rtol=0, atol=1e-12)
    assert fb.checkout("d") == 1
    v1 = {k: v.copy() for k, v in fb.model.items()}
    # c's delta is against version 0 (its start): [0, 6]; weight (1 + 1) ** -1 = 0.5
    stale = fb.submit("c", weights=_plus([0.0, 6.0], 0.0), sample_weight=2)
    assert (stale.update.start_version, stale.update.staleness, stale.update.staleness_weight) == (0, 1, 0.5)
    fresh = fb.submit("d", delta={"w": np.array([4.0, 0.0]), "b": np.array([1.0])}, sample_weight=2)
    assert fresh.update.staleness == 0 and fresh.applied.version == 2
    # step = 0.5 * (2 * 0.5 * [0, 6] + 2 * 1 * [4, 0]) / (2 + 2) = [1, 0.75]; b: 0.5 * 2 * 1 / 4 = 0.25
    np.testing.assert_allclose(fb.model["w"], v1["w"] + [1.0, 0.75], rtol=0, atol=1e-12)
    np.testing.assert_allclose(fb.model["b"], v1["b"] + [0.25], rtol=0, atol=1e-12)


def test_too_stale_is_dropped_and_counted_without_touching_the_buffer():
    fb = FedBuff(START, FedBuffConfig(buffer_size=1, max_staleness=1))
    fb.checkout("slow")
    for version in range(2):
        fb.checkout("fast")
        fb.submit("fast", delta={"w": np.ones(2), "b": np.ones(1)}, sample_weight=1)
        assert fb.version == version + 1
    dropped = fb.submit("slow", weights=_plus([9.0, 9.0], 9.0), sample_weight=5)
    assert dropped.status == "dropped" and dropped.applied is None and fb.buffered == 0
    assert dropped.update.staleness == 2
    assert dropped.reason == (
        "The update of site 'slow' (trained from version 0) arrived at version 2: staleness 2 is above "
        "max_staleness 1; dropped."
    )
    np.testing.assert_allclose(fb.model["w"], START["w"] + 2.0, rtol=0, atol=1e-12)


def test_only_versions_still_trained_from_are_kept():
    fb = FedBuff(START, FedBuffConfig(buffer_size=1, max_staleness=2))
    fb.checkout("slow")  # holds version 0
    for _ in range(2):
        fb.checkout("fast")
        fb.submit("fast", delta={"w": np.ones(2), "b": np.ones(1)}, sample_weight=1)
    assert sorted(fb._models) == [0, 2]  # version 1 is no one's start
    fb.checkout("fast")
    fb.submit("fast", delta={"w": np.ones(2), "b": np.ones(1)}, sample_weight=1)
    assert sorted(fb._models) == [3]  # version 0 is now 3 old: slow's update will be dropped anyway
    assert fb.outstanding() == {"slow": 0}
    assert fb.abandon("slow") == 0 and fb.outstanding() == {}


def test_clipping_bounds_each_update_norm():
    fb = FedBuff(START, FedBuffConfig(buffer_size=1, max_update_norm=1.0))
    fb.checkout("a")
    done = fb.submit("a", delta={"w": np.array([3.0, 0.0]), "b": np.array([4.0])}, sample_weight=1)
    assert done.update.clipped is True
    np.testing.assert_allclose(fb.model["w"], START["w"] + [0.6, 0.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(fb.model["b"], START["b"] + [0.8], rtol=0, atol=1e-12)


NAN = float("nan")
# (what the site sends, the error's words after the site's name)
REFUSED = [
    ({"weights": {"w": np.array([NAN, 0.0]), "b": np.zeros(1)}, "sample_weight": 1}, "non-finite"),
    ({"weights": {"w": np.zeros(3), "b": np.zeros(1)}, "sample_weight": 1}, "has shape (3,)"),
    ({"delta": {"w": np.zeros(2)}, "sample_weight": 1}, "lacks parameter(s) b"),
    ({"delta": {"w": np.zeros(2), "b": np.zeros(1)}, "sample_weight": 0}, "sample weight 0"),
    ({"delta": {"w": np.zeros(2), "b": np.zeros(1)}, "sample_weight": "x"}, "sample weight 'x'"),
    ({"sample_weight": 1}, "either weights or a delta, not neither"),
]


@pytest.mark.parametrize(("sent", "words"), REFUSED)
def test_a_bad_update_is_refused_naming_the_site(sent, words):
    fb = FedBuff(START, FedBuffConfig(buffer_size=1))
    fb.checkout("hungary")
    with pytest.raises(
        FedBuffUpdateError, match=r"The update of site 'hungary' \(trained from version 0\)"
    ) as e:
        fb.submit("hungary", **sent)
    assert words in str(e.value)
    assert fb.version == 0 and fb.buffered == 0 and fb.outstanding() == {}  # the task is over


def test_a_site_holds_one_task_and_cannot_answer_without_one():
    fb = FedBuff(START, FedBuffConfig(buffer_size=1))
    fb.checkout("a")
    with pytest.raises(ValueError, match="still holds a task from version 0"):
        fb.checkout("a")
    with pytest.raises(FedBuffUpdateError, match="Site 'b' sent an update but holds no task"):
        fb.submit("b", delta={"w": np.zeros(2), "b": np.zeros(1)}, sample_weight=1)


def test_the_initial_model_is_copied():
    weights = {"w": np.array([1.0])}
    fb = FedBuff(weights, FedBuffConfig(buffer_size=1))
    weights["w"][0] = 5.0
    assert fb.model["w"][0] == 1.0
