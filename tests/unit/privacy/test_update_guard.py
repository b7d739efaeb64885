"""guard_update, check_max_norm and sum_within_bound: the site-side checks before an update is hidden."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fedhealth.privacy.update_guard import check_max_norm, guard_update, sum_within_bound

SHAPES = {"conv.weight": (4, 1, 3, 3), "conv.bias": (4,), "fc.weight": (1, 16)}
# (norm of the update, max_norm, expected sent norm, expected clipped)
CLIP_CASES = [
    (10.0, 1.0, 1.0, True),
    (3.0, 0.5, 0.5, True),
    (0.25, 1.0, 0.25, False),
    (1.0, 1.0, 1.0, False),  # at the bound: kept as it is
    (1e6, 2.5, 2.5, True),
]
# (layer -> positions made non-finite, value, the expected "layer (n values)" listing)
BAD_VALUE_CASES = [
    ({"fc.weight": [0]}, np.nan, "fc.weight (1 values)"),
    ({"conv.bias": [0, 3]}, np.inf, "conv.bias (2 values)"),
    ({"conv.bias": [1], "fc.weight": [2, 5, 7]}, -np.inf, "conv.bias (1 values), fc.weight (3 values)"),
]
BAD_BOUNDS = [0.0, -1.0, float("nan"), float("inf"), "large", None, True]  # True is a flag, not a bound
# (total norm, weight sum, max_norm, within)
SUM_CASES = [
    (3.9, 4.0, 1.0, True),
    (4.0, 4.0, 1.0, True),
    (4.1, 4.0, 1.0, False),
    (float("nan"), 4.0, 1.0, False),
]


def _update(norm: float, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    total = np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in raw.values()))
    return {k: (v * (norm / total)).astype(np.float32) for k, v in raw.items()}


def _norm(update: dict) -> float:
    return float(np.sqrt(sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in update.values())))


@pytest.mark.parametrize(("norm", "bound", "sent", "clipped"), CLIP_CASES)
def test_the_update_is_clipped_to_max_norm(norm: float, bound: float, sent: float, clipped: bool) -> None:
    update = _update(norm)
    guarded = guard_update(update, max_norm=bound, where="site-1's round 3 update")
    assert guarded.clipped is clipped
    assert guarded.norm == pytest.approx(norm, rel=1e-6)
    assert _norm(guarded.update) == pytest.approx(sent, rel=1e-9 if clipped else 1e-6)
    for name, value in update.items():  # clipping only scales: the direction is kept
        np.testing.assert_allclose(guarded.update[name], value * (sent / guarded.norm), rtol=1e-6)
        assert guarded.update[name].dtype == np.float64 and guarded.update[name].shape == SHAPES[name]


@pytest.mark.parametrize(("bad", "value", "listed"), BAD_VALUE_CASES)
def test_non_finite_values_are_refused_naming_the_layers(bad: dict, value: float, listed: str) -> None:
    update = _update(1.0)
    for name, positions in bad.items():
        update[name].reshape(-1)[positions] = value
    with pytest.raises(ValueError) as info:
        guard_update(update, max_norm=1.0, where="site-1's round 3 update")
    assert str(info.value).startswith(
        f"site-1's round 3 update holds NaN or infinite values in {listed}; refused before it leaves the site"
    )


def test_an_empty_update_is_refused() -> None:
    with pytest.raises(ValueError, match="^the update has no parameters\\.$"):
        guard_update({}, max_norm=1.0)


@pytest.mark.parametrize("bound", BAD_BOUNDS)
def test_a_bad_max_norm_is_refused_naming_where(bound: object) -> None:
    expected = f"heart_he's UpdateGuard: max_norm must be a positive finite number, got {bound!r}."
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        check_max_norm(bound, where="heart_he's UpdateGuard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_norm must be a positive finite number"):
        guard_update(_update(1.0), max_norm=bound)  # type: ignore[arg-type]


@pytest.mark.parametrize(("total", "weights", "bound", "within"), SUM_CASES)
def test_sum_within_bound(total: float, weights: float, bound: float, within: bool) -> None:
    assert sum_within_bound(total, weight_sum=weights, max_norm=bound) is within


def test_a_sum_of_clipped_updates_is_within_the_bound() -> None:
    guarded = [
        guard_update(_update(n, seed=i), max_norm=1.0).update for i, n in enumerate((0.3, 5.0, 80.0, 1.0))
    ]
    total = {k: sum(g[k] for g in guarded) for k in SHAPES}
    assert sum_within_bound(_norm(total), weight_sum=4, max_norm=1.0)
    assert not sum_within_bound(_norm(total) + 4.0, weight_sum=4, max_norm=1.0)
