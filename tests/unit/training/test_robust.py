"""Update checks and robust aggregation rules against hand-worked cases, numpy and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import trim_mean

from fedhealth.training.robust import (
    aggregate_updates,
    clip_by_norm,
    coordinate_median,
    effective_steps,
    fednova,
    norm_clipped_mean,
    norm_outliers,
    normalized_updates,
    trimmed_mean,
    update_norm,
    validate_update,
    weighted_mean,
)

REFERENCE = {"net.weight": np.zeros((1, 3), "float32"), "net.bias": np.zeros(1, "float32")}
GOOD = {"net.weight": np.ones((1, 3), "float32"), "net.bias": np.ones(1, "float32")}
NAN, INF = float("nan"), float("inf")

# (crafted update, expected reason; None = valid)
VALIDATION_CASES = [
    (GOOD, None),
    ({**GOOD, "net.bias": np.array([7], "int64")}, None),
    (
        {**GOOD, "net.weight": np.array([[1, NAN, NAN]], "float32")},
        "Parameter net.weight has 2 non-finite value(s) (NaN or Inf) out of 3.",
    ),
    (
        {**GOOD, "net.bias": np.array([INF], "float32")},
        "Parameter net.bias has 1 non-finite value(s) (NaN or Inf) out of 1.",
    ),
    (
        {**GOOD, "net.weight": np.array([[-INF, 0, NAN]])},
        "Parameter net.weight has 2 non-finite value(s) (NaN or Inf) out of 3.",
    ),
    ({"net.weight": GOOD["net.weight"]}, "The update lacks parameter(s) net.bias of the global model."),
    ({}, "The update lacks parameter(s) net.bias, net.weight of the global model."),
    (
        {**GOOD, "fc.weight": np.ones(2)},
        "The update has parameter(s) fc.weight that the global model does not have.",
    ),
    (
        {**GOOD, "net.weight": np.ones(3)},
        "Parameter net.weight has shape (3,) but the global model's is (1, 3).",
    ),
    (
        {**GOOD, "net.bias": np.ones((1, 1))},
        "Parameter net.bias has shape (1, 1) but the global model's is (1,).",
    ),
    ({**GOOD, "net.bias": np.array(["a"])}, "Parameter net.bias holds <U1 values, not numbers."),
]
# (site norms, max_ratio, expected flagged sites)
OUTLIER_CASES = [
    ({"a": 1.0, "b": 1.2, "c": 0.9, "d": 100.0}, 10.0, {"d"}),
    ({"a": 1.0, "b": 1.2, "c": 0.9, "d": 11.2}, 10.0, {"d"}),  # median 1.1: limit 11
    ({"a": 1.0, "b": 1.2, "c": 0.9, "d": 10.9}, 10.0, set()),  # median 1.1: 10.9 < 11
    ({"a": 1.0, "b": 2.0, "c": 50.0}, 10.0, {"c"}),
    ({"a": 1.0, "b": 2.0, "c": 50.0}, 30.0, set()),
    ({"a": 1.0, "b": 100.0}, 10.0, set()),  # two sites: too few to judge
    ({"a": 1.0}, 1.0, set()),
    ({}, 10.0, set()),
    ({"a": 0.0, "b": 0.0, "c": 0.0, "d": 1e-3}, 10.0, {"d"}),  # median 0
    ({"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}, 1.0, set()),
]
# (updates, weights, keyword arguments, error message)
ERROR_CASES = [
    (
        [GOOD],
        [1],
        {"rule": "krum"},
        "Unknown aggregation rule 'krum'; choose one of mean, median, trimmed_mean, ",
    ),
    ([], [], {"rule": "median"}, "needs at least one update"),
    ([GOOD, GOOD], [1], {"rule": "mean"}, "Got 2 updates but 1 weights."),
    ([GOOD, GOOD], [0, 0], {"rule": "mean"}, "Weights must be finite and non-negative with a positive sum"),
    ([GOOD, GOOD], [1, -1], {"rule": "clipped_mean", "clip_norm": 1.0}, "non-negative"),
    ([GOOD, GOOD], [1, NAN], {"rule": "mean"}, "finite"),
    ([GOOD, {"net.weight": GOOD["net.weight"]}], [1, 1], {"rule": "median"}, "Update 1 has parameters"),
    (
        [GOOD, {**GOOD, "net.bias": np.ones(2)}],
        [1, 1],
        {"rule": "trimmed_mean"},
        r"Parameter net.bias of update 1 has shape \(2,\) but update 0's is \(1,\).",
    ),
    (
        [GOOD] * 4,
        [1] * 4,
        {"rule": "trimmed_mean", "trim_fraction": 0.5},
        r"trim_fraction must be in \[0, 0.5\)",
    ),
    ([GOOD] * 4, [1] * 4, {"rule": "trimmed_mean", "trim_fraction": -0.1}, "got -0.1"),
    ([GOOD], [1], {"rule": "clipped_mean"}, "The clipped_mean rule needs clip_norm"),
    ([GOOD], [1], {"rule": "clipped_mean", "clip_norm": 0.0}, "max_norm must be positive, got 0.0."),
    ([GOOD], [1], {"rule": "fednova"}, "The fednova rule needs steps, each site's local optimizer steps"),
    ([GOOD, GOOD], [1, 1], {"rule": "fednova", "steps": [5]}, "Got 2 updates but 1 local step counts."),
    (
        [GOOD, GOOD],
        [1, 1],
        {"rule": "fednova", "steps": [5, 0]},
        r"Local step counts must be finite and positive, got \[5, 0\].",
    ),
    ([GOOD, GOOD], [1, 1], {"rule": "fednova", "steps": [5, NAN]}, "finite and positive"),
    ([GOOD, GOOD], [1, -1], {"rule": "fednova", "steps": [5, 5]}, "non-negative"),
]
# FedNova by hand (Wang et al. 2020): (updates Δ_i, weights, steps τ_i, τ_eff, global update, FedAvg's)
FEDNOVA_CASES = [
    # A runs 10 steps of +1 along x, B (slow) 1 step of +1 along y, equal samples: p = (1/2, 1/2),
    # d = (1/2, 1/2), τ_eff = 5.5. FedAvg moves 10x further along A's axis; FedNova along both alike.
    ([[10.0, 0.0], [0.0, 1.0]], [1, 1], [10, 1], 5.5, [2.75, 2.75], [5.0, 0.5]),
    # The same with 3x more samples at A: p = (3/4, 1/4), τ_eff = 7.75, d = (3/4, 1/4).
    ([[10.0, 0.0], [0.0, 1.0]], [300, 100], [10, 1], 7.75, [5.8125, 1.9375], [7.5, 0.25]),
    # d_A = (1, 1), d_B = (1, 0), p = (1/4, 3/4): d = (1, 1/4), τ_eff = 0.5 + 3 = 3.5.
    ([[2.0, 2.0], [4.0, 0.0]], [1, 3], [2, 4], 3.5, [3.5, 0.875], [3.5, 0.5]),
    # One site: FedNova is its own update, whatever its steps.
    ([[3.0, -1.0]], [7], [4], 4.0, [3.0, -1.0], [3.0, -1.0]),
]


def _random_updates(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "net.weight": rng.normal(size=(2, 5)).astype("float32"),
            "net.bias": rng.normal(size=2).astype("float32"),
            "scalar": np.float32(rng.normal()),
        }
        for _ in range(n)
    ]


def _stack(updates: list[dict], name: str) -> np.ndarray:
    return np.stack([np.asarray(u[name], dtype="float64") for u in updates])


@pytest.mark.parametrize(("update", "reason"), VALIDATION_CASES)
def test_validate_update(update: dict, reason: str | None) -> None:
    assert validate_update(update, reference=REFERENCE) == reason


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4), (8, 5)])
def test_coordinate_median_equals_numpy(n: int, seed: int) -> None:
    updates = _random_updates(n, seed)
    out = coordinate_median(updates)
    assert set(out) == {"net.weight", "net.bias", "scalar"}
    for name in out:
        assert out[name].shape == np.shape(updates[0][name])
        np.testing.assert_array_equal(out[name], np.median(_stack(updates, name), axis=0))


@pytest.mark.parametrize(
    ("n", "beta", "seed"), [(4, 0.25, 0), (5, 0.2, 1), (7, 0.3, 2), (10, 0.1, 3), (10, 0.45, 4), (3, 0.0, 5)]
)
def test_trimmed_mean_equals_scipy(n: int, beta: float, seed: int) -> None:
    updates = _random_updates(n, seed)
    out = trimmed_mean(updates, trim_fraction=beta)
    for name in out:
        np.testing.assert_allclose(out[name], trim_mean(_stack(updates, name), beta, axis=0), rtol=1e-12)


@pytest.mark.parametrize(
    ("values", "median", "beta", "trimmed"),
    [
        ([1.0, 2.0, 3.0, 100.0], 2.5, 0.25, 2.5),
        ([1.0, 2.0, 3.0, 4.0, 1000.0], 3.0, 0.2, 3.0),
        ([-50.0, 1.0, 2.0, 3.0, 4.0, 1000.0], 2.5, 0.2, 2.5),
        ([5.0, 7.0, 9.0], 7.0, 0.0, 7.0),
    ],
)
def test_median_and_trimmed_mean_resist_one_outlier(
    values: list[float], median: float, beta: float, trimmed: float
) -> None:
    updates = [{"w": np.array([v, -v])} for v in values]
    np.testing.assert_allclose(coordinate_median(updates)["w"], [median, -median])
    np.testing.assert_allclose(trimmed_mean(updates, trim_fraction=beta)["w"], [trimmed, -trimmed])


def test_trimmed_mean_warns_when_it_trims_nothing() -> None:
    updates = [{"w": np.array([v])} for v in (1.0, 2.0, 3.0, 100.0)]
    with pytest.warns(UserWarning, match=r"trims floor\(0.1 \* 4\) = 0 of 4 updates"):
        out = trimmed_mean(updates, trim_fraction=0.1)
    np.testing.assert_allclose(out["w"], [26.5])


@pytest.mark.parametrize(
    ("update", "max_norm", "expected"),
    [
        ({"w": np.array([3.0, 4.0])}, 1.0, {"w": [0.6, 0.8]}),
        ({"a": np.array([3.0]), "b": np.array([[4.0]])}, 2.5, {"a": [1.5], "b": [[2.0]]}),
        ({"w": np.array([3.0, 4.0], "float32")}, 5.0, {"w": [3.0, 4.0]}),
        ({"w": np.array([3.0, 4.0])}, 100.0, {"w": [3.0, 4.0]}),
        ({"w": np.zeros(3)}, 1.0, {"w": [0.0, 0.0, 0.0]}),
    ],
)
def test_clip_by_norm(update: dict, max_norm: float, expected: dict) -> None:
    out = clip_by_norm(update, max_norm=max_norm)
    for name, value in expected.items():
        np.testing.assert_allclose(out[name], value, rtol=1e-12)
    assert update_norm(out) == pytest.approx(min(max_norm, update_norm(update)), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clipping_bounds_norm_exactly(seed: int) -> None:
    updates = [{k: 10 * v for k, v in u.items()} for u in _random_updates(5, seed)]
    for update in updates:
        assert update_norm(clip_by_norm(update, max_norm=0.5)) == pytest.approx(0.5, rel=1e-12)
    mean = norm_clipped_mean(updates, [1, 2, 3, 4, 5], clip_norm=0.5)
    assert update_norm(mean) <= 0.5 + 1e-12
    clipped = [clip_by_norm(u, max_norm=0.5) for u in updates]
    for name in mean:
        expected = np.tensordot(np.arange(1, 6) / 15, _stack(clipped, name), axes=1)
        np.testing.assert_allclose(mean[name], expected, rtol=1e-12)


def test_update_norm_spans_all_parameters() -> None:
    assert update_norm({"a": np.array([1.0, 2.0]), "b": np.array([[2.0], [4.0]])}) == pytest.approx(5.0)
    assert update_norm({"a": np.full(4, 1e30, "float32")}) == pytest.approx(2e30, rel=1e-6)


@pytest.mark.parametrize(("norms", "max_ratio", "flagged"), OUTLIER_CASES)
def test_norm_outliers(norms: dict[str, float], max_ratio: float, flagged: set[str]) -> None:
    assert set(norm_outliers(norms, max_ratio=max_ratio)) == flagged


def test_norm_outlier_of_a_x100_update_among_four_sites() -> None:
    honest = _random_updates(3, seed=7)
    poisoned = {k: 100 * v for k, v in honest[0].items()}
    norms = {f"site-{i}": update_norm(u) for i, u in enumerate([*honest, poisoned], start=1)}
    reasons = norm_outliers(norms, max_ratio=10.0)
    assert list(reasons) == ["site-4"]
    median = float(np.median(list(norms.values())))
    assert reasons["site-4"] == (
        f"Its update norm {norms['site-4']:.4g} is {norms['site-4'] / median:.3g} times the median norm "
        f"{median:.4g} of 4 sites; at most 10 times is allowed."
    )


@pytest.mark.parametrize(
    ("norms", "max_ratio", "message"),
    [
        ({"a": 1.0}, 0.5, "max_ratio must be at least 1"),
        ({"a": 1.0}, NAN, "max_ratio must be at least 1"),
        (
            {"a": 1.0, "b": -1.0, "c": 1.0},
            10.0,
            "The update norm of b must be a non-negative number, got -1.0.",
        ),
        (
            {"a": NAN, "b": 1.0, "c": 1.0},
            10.0,
            "The update norm of a must be a non-negative number, got nan.",
        ),
    ],
)
def test_norm_outliers_errors(norms: dict[str, float], max_ratio: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        norm_outliers(norms, max_ratio=max_ratio)


@pytest.mark.parametrize("rule", ["mean", "median", "trimmed_mean", "clipped_mean", "fednova"])
def test_aggregate_updates_dispatches_to_the_rule(rule: str) -> None:
    updates, weights, steps = _random_updates(5, seed=11), [199, 172, 30, 85, 10], [50, 43, 8, 22, 3]
    out = aggregate_updates(updates, weights, rule=rule, trim_fraction=0.2, clip_norm=1.0, steps=steps)
    expected = {
        "mean": lambda: weighted_mean(updates, weights),
        "median": lambda: coordinate_median(updates),
        "trimmed_mean": lambda: trimmed_mean(updates, trim_fraction=0.2),
        "clipped_mean": lambda: norm_clipped_mean(updates, weights, clip_norm=1.0),
        "fednova": lambda: fednova(updates, weights, steps),
    }[rule]()
    for name, value in expected.items():
        assert out[name].dtype == np.float64
        np.testing.assert_array_equal(out[name], value)


def test_weighted_mean_by_sample_count() -> None:
    updates = [{"w": np.array([1.0, 10.0])}, {"w": np.array([5.0, 2.0])}]
    np.testing.assert_allclose(weighted_mean(updates, [30, 90])["w"], [4.0, 4.0])
    # the median and trimmed mean ignore the weights (Yin et al. 2018)
    np.testing.assert_allclose(aggregate_updates(updates, [30, 90], rule="median")["w"], [3.0, 6.0])
    assert math.isclose(update_norm(weighted_mean(updates, [1, 0])), math.hypot(1, 10))


@pytest.mark.parametrize(("updates", "weights", "kwargs", "message"), ERROR_CASES)
def test_aggregate_updates_errors(updates: list, weights: list, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        aggregate_updates(updates, weights, **kwargs)


@pytest.mark.parametrize(("deltas", "weights", "steps", "tau_eff", "expected", "fedavg"), FEDNOVA_CASES)
def test_fednova_by_hand(
    deltas: list, weights: list, steps: list, tau_eff: float, expected: list, fedavg: list
) -> None:
    updates = [{"w": np.array(d)} for d in deltas]
    assert math.isclose(effective_steps(weights, steps), tau_eff, rel_tol=1e-12)
    np.testing.assert_allclose(fednova(updates, weights, steps)["w"], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weighted_mean(updates, weights)["w"], fedavg, rtol=1e-12, atol=1e-12)
    normalized = normalized_updates(updates, steps)
    np.testing.assert_allclose([n["w"] for n in normalized], np.array(deltas) / np.array(steps)[:, None])


def test_fednova_counts_a_slow_sites_direction_fully() -> None:
    # Two sites with equal samples and the same per-step progress, one along x, one along y; the slow
    # site does 1/10 of the steps. FedAvg lets the fast site's axis win 10:1; FedNova goes diagonally.
    updates = [{"w": np.array([20.0, 0.0])}, {"w": np.array([0.0, 2.0])}]
    out = aggregate_updates(updates, [50, 50], rule="fednova", steps=[20, 2])["w"]
    np.testing.assert_allclose(out, [5.5, 5.5], rtol=1e-12)  # τ_eff = 11, d = (1/2, 1/2)
    np.testing.assert_allclose(weighted_mean(updates, [50, 50])["w"], [10.0, 1.0])


@pytest.mark.parametrize(("n", "tau", "seed"), [(1, 1, 0), (2, 7, 1), (4, 50, 2), (5, 0.5, 3), (8, 13, 4)])
def test_fednova_equals_weighted_mean_for_equal_steps(n: int, tau: float, seed: int) -> None:
    updates = _random_updates(n, seed)
    weights = list(np.random.default_rng(seed).integers(1, 300, size=n))
    assert effective_steps(weights, [tau] * n) == tau
    out = fednova(updates, weights, [tau] * n)
    mean = weighted_mean(updates, weights)
    for name, value in mean.items():
        np.testing.assert_array_equal(out[name], value)  # bit for bit, not just close


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fednova_matches_the_formula_and_ignores_the_unit_of_steps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    updates = _random_updates(4, seed)
    weights = rng.integers(1, 300, size=4).astype(float)
    steps = rng.integers(1, 60, size=4).astype(float)
    p = weights / weights.sum()
    tau_eff = float(np.dot(p, steps))
    out = fednova(updates, list(weights), list(steps))
    for name, value in out.items():
        expected = tau_eff * sum(
            pi * _stack([u], name)[0] / t for pi, u, t in zip(p, updates, steps, strict=True)
        )
        np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-15)
    # τ_i counted in half-steps gives the same global update: only the ratios τ_eff / τ_i matter.
    doubled = fednova(updates, list(weights), list(2 * steps))
    for name, value in out.items():
        np.testing.assert_allclose(doubled[name], value, rtol=1e-12, atol=1e-15)
