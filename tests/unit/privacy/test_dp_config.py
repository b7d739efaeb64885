"""DP settings: refusals of δ ≥ 1/n, of batches below 8, and of bad settings, with their messages."""

from __future__ import annotations

import pytest

from fedhealth.privacy.dp_config import DPConfig, check_site_budget

# (n, configured delta, delta used)
DELTA_CASES = [(100, None, 0.001), (199, None, 0.1 / 199), (30, 0.01, 0.01), (1000, 1e-5, 1e-5)]
# (n, delta) refused: delta >= 1/n
BAD_DELTAS = [(100, 0.01), (100, 0.5), (30, 0.04), (1000, 0.001)]
# (settings, fragment of the error)
BAD_SETTINGS = [
    ({"target_epsilon": 0}, "target_epsilon must be a positive finite number"),
    ({"target_epsilon": float("inf")}, "target_epsilon must be a positive finite number"),
    ({"target_epsilon": 1, "delta": 1.5}, "delta must be in (0, 1)"),
    ({"target_epsilon": 1, "max_grad_norm": 0}, "max_grad_norm must be positive"),
    ({"target_epsilon": 1, "accountant": "gdp"}, "accountant must be one of ('rdp', 'prv')"),
    ({"target_epsilon": 1, "rounds": 0}, "rounds must be at least 1"),
    ({"target_epsilon": 1, "grad_sample_mode": "magic"}, "grad_sample_mode must be one of"),
    ({"target_epsilon": 1, "epsilon": 2}, "unknown dp settings ['epsilon']"),
    ({"target_epsilon": 1, "augmult": -1}, "augmult must be between 0 (off) and 64 copies per image, got -1"),
    ({"target_epsilon": 1, "augmult": 65}, "augmult must be between 0 (off) and 64 copies per image, got 65"),
    ({"target_epsilon": 1, "augmult": 2.5}, "augmult must be a whole number of copies, got 2.5"),
    ({"target_epsilon": 1, "augmult": True}, "augmult must be a whole number of copies, got True"),
    (
        {"target_epsilon": 1, "augmult": 4, "grad_sample_mode": "ghost"},
        "augmult needs per-example gradients to average (grad_sample_mode in ('hooks', 'functorch')); "
        "'ghost' does not keep them",
    ),
]


@pytest.mark.parametrize(("n", "delta", "expected"), DELTA_CASES)
def test_delta_defaults_below_one_over_n(n: int, delta: float | None, expected: float) -> None:
    used = DPConfig(target_epsilon=1.0, delta=delta).delta_for(n)
    assert used == pytest.approx(expected) and used < 1 / n


@pytest.mark.parametrize(("n", "delta"), BAD_DELTAS)
def test_delta_at_or_above_one_over_n_is_refused(n: int, delta: float) -> None:
    with pytest.raises(ValueError, match=r"is not below 1/n") as info:
        DPConfig(target_epsilon=1.0, delta=delta).delta_for(n)
    assert f"n={n} training records" in str(info.value) and "release a whole patient record" in str(
        info.value
    )


@pytest.mark.parametrize("batch", [1, 4, 7])
def test_small_batches_are_refused_with_the_gradient_inversion_reason(batch: int) -> None:
    with pytest.raises(ValueError) as info:
        DPConfig(target_epsilon=1.0).check_batch(batch)
    message = str(info.value)
    assert f"batch_size {batch} is below 8" in message
    assert "gradient inversion" in message and "allow_small_batch=true" in message


@pytest.mark.parametrize("batch", [1, 4, 7])
def test_the_override_accepts_small_batches(batch: int) -> None:
    DPConfig(target_epsilon=1.0, allow_small_batch=True).check_batch(batch)


@pytest.mark.parametrize("batch", [8, 16, 64])
def test_batches_of_eight_or_more_pass(batch: int) -> None:
    DPConfig(target_epsilon=1.0).check_batch(batch)


@pytest.mark.parametrize(("settings", "fragment"), BAD_SETTINGS)
def test_bad_settings_are_refused(settings: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        DPConfig.from_dict(settings)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [(None, None), (2, 2.0), (0.5, 0.5)])
def test_site_budget_values(value: object, expected: float | None) -> None:
    assert check_site_budget(value, "local/x.json") == expected


@pytest.mark.parametrize("value", [0, -1, "2", True, [1]])
def test_bad_site_budgets_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"local/x.json: the privacy budget must be a positive number"):
        check_site_budget(value, "local/x.json")


@pytest.mark.parametrize("k", [0, 1, 8, 64])
def test_augmult_in_range_is_kept(k: int) -> None:
    assert DPConfig.from_dict({"target_epsilon": 1, "augmult": k}).augmult == k
