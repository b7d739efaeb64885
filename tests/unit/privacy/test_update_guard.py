"""The site's checks before an update is hidden: NaN refused by layer, the L2 clip, the sum bound."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.privacy.update_guard import check_max_norm, guard_update, sum_within_bound

# (layer values, max_norm, norm before, clipped)
CLIPS = [
    ({"w": [3.0, 4.0]}, 10.0, 5.0, False),
    ({"w": [3.0, 4.0]}, 5.0, 5.0, False),  # exactly at the bound: left alone
    ({"w": [3.0, 4.0]}, 1.0, 5.0, True),
    ({"w": [[1.0, 2.0], [2.0, 0.0]], "b": [4.0]}, 2.5, 5.0, True),  # the norm over all layers together
    ({"w": [0.0, 0.0]}, 1.0, 0.0, False),
    ({"w": [1e150, -1e150]}, 1.0, 1e150 * np.sqrt(2), True),
]
# (update, the refusal's message)
REFUSED = [
    (
        {"w": [1.0, np.nan], "b": [0.0]},
        r"site-1's round 3 update holds NaN or infinite values in w \(1 values\)",
    ),
    (
        {"w": [np.inf, -np.inf, 1.0], "b": [np.nan, 0.0]},
        r"in b \(1 values\), w \(2 values\); refused before it leaves the site \(the local training diverged",
    ),
    ({}, "site-1's round 3 update has no parameters"),
]
# (norm of the sum, summed weight, max_norm, honest)
SUMS = [
    (10.0, 1.0, 10.0, True),
    (10.0 * (1 + 1e-7), 1.0, 10.0, True),  # within the relative slack
    (10.0 * (1 + 1e-5), 1.0, 10.0, False),
    (49.9, 5.0, 10.0, True),
    (50.1, 5.0, 10.0, False),
    (0.0, 0.0, 10.0, True),
    (float("nan"), 5.0, 10.0, False),
    (float("inf"), 5.0, 10.0, False),
]


@pytest.mark.parametrize(("layers", "max_norm", "norm", "clipped"), CLIPS)
def test_clip(layers: dict, max_norm: float, norm: float, clipped: bool) -> None:
    update = {
        k: np.asarray(v, np.float32 if abs(np.max(v)) < 1e30 else np.float64) for k, v in layers.items()
    }
    guarded = guard_update(update, max_norm=max_norm)
    assert guarded.clipped is clipped
    assert guarded.norm == pytest.approx(norm, rel=1e-6)
    after = np.sqrt(sum(np.sum(np.square(a)) for a in guarded.update.values()))
    assert after == pytest.approx(max_norm if clipped else norm, rel=1e-12, abs=1e-300)
    for name, a in guarded.update.items():
        assert a.dtype == np.float64 and a.shape == update[name].shape
        original = np.asarray(update[name], np.float64)
        if clipped:  # the same direction, scaled by max_norm / norm
            assert np.allclose(a, original * (max_norm / norm), rtol=1e-12)
        else:  # untouched
            assert np.array_equal(a, original)


@pytest.mark.parametrize(("update", "message"), REFUSED)
def test_refused(update: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        guard_update(
            {k: np.asarray(v) for k, v in update.items()}, max_norm=1.0, where="site-1's round 3 update"
        )


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan"), float("inf"), "ten", None])
def test_max_norm_must_be_positive(max_norm) -> None:
    with pytest.raises(ValueError, match=r"the job's config: max_norm must be a positive finite number, got"):
        check_max_norm(max_norm, where="the job's config")
    with pytest.raises(ValueError, match="max_norm must be a positive finite number"):
        guard_update({"w": np.ones(2)}, max_norm=max_norm)


def test_max_norm_as_text() -> None:
    assert check_max_norm("2.5", where="x") == 2.5


@pytest.mark.parametrize(("norm", "weight_sum", "max_norm", "honest"), SUMS)
def test_sum_within_bound(norm: float, weight_sum: float, max_norm: float, honest: bool) -> None:
    assert sum_within_bound(norm, weight_sum=weight_sum, max_norm=max_norm) is honest


def test_a_sum_of_clipped_updates_is_within_the_bound() -> None:
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.1, 1.0, size=6)
    clipped = [guard_update({"w": rng.normal(size=50) * 10}, max_norm=2.0).update["w"] for _ in weights]
    total = sum(w * x for w, x in zip(weights, clipped, strict=True))
    assert sum_within_bound(float(np.linalg.norm(total)), weight_sum=float(weights.sum()), max_norm=2.0)
    assert not sum_within_bound(float(np.linalg.norm(total)), weight_sum=float(weights.sum()), max_norm=0.1)
