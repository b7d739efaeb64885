"""The "too small to tell" screens: Hanley-McNeil for AUC, Wilson for proportions."""

from __future__ import annotations

import pytest

from fedhealth.onboarding.sample_size import (
    MIN_PER_CLASS,
    check_sample,
    could_clear,
    hanley_mcneil_se,
    needed_eval_size,
    wilson_perfect_lower,
)

# (auc, n_pos, n_neg, expected SE): worked by hand from Hanley & McNeil (1982), eq. 2.
SE_CASES = [
    (0.8, 50, 50, 0.044502),
    (0.8, 10, 10, 0.101980),
    (0.9, 10, 10, 0.073981),
    (0.5, 1, 1, 0.5),
]
# (n, expected n / (n + 1.96^2))
WILSON_CASES = [(0, 0.0), (35, 0.901099), (100, 0.963007)]
# (metric, threshold, n_pos, n_neg, could a perfect model clear it?)
CLEAR_CASES = [
    ("auc", 0.8, 6, 6, False),  # fewer than 10 of a class
    ("auc", 0.8, 10, 10, True),  # 0.8 + 1.96 * 0.10198 = 0.99988
    ("auc", 0.9, 10, 10, False),  # 0.9 + 1.96 * 0.07398 = 1.045
    ("auc", 0.6, MIN_PER_CLASS - 1, 100, False),
    ("accuracy", 0.9, 17, 17, False),  # 34 < 0.9 * 3.8415 / 0.1 = 34.57
    ("accuracy", 0.9, 18, 17, True),
    ("sensitivity", 0.8, 15, 50, False),  # 15 < 15.37
    ("sensitivity", 0.8, 16, 50, True),
    ("specificity", 0.8, 50, 15, False),
]
# (metric, threshold, prevalence)
NEEDED_CASES = [("auc", 0.8, 0.5), ("auc", 0.9, 0.3), ("auc", 0.99, 0.5), ("accuracy", 0.95, 0.4)]
# (metric, threshold, message)
BAD_CASES = [
    ("brier", 0.8, "metric must be one of"),
    ("auc", 0.0, r"threshold must be in \(0, 1\), got 0.0"),
    ("auc", 1.0, r"threshold must be in \(0, 1\), got 1.0"),
]


@pytest.mark.parametrize(("auc", "n_pos", "n_neg", "expected"), SE_CASES)
def test_hanley_mcneil_se(auc: float, n_pos: int, n_neg: int, expected: float) -> None:
    assert hanley_mcneil_se(auc, n_pos, n_neg) == pytest.approx(expected, abs=1e-6)


def test_hanley_mcneil_se_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes, got 0 positive and 5 negative"):
        hanley_mcneil_se(0.8, 0, 5)


@pytest.mark.parametrize(("n", "expected"), WILSON_CASES)
def test_wilson_perfect_lower(n: int, expected: float) -> None:
    assert wilson_perfect_lower(n) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("metric", "threshold", "n_pos", "n_neg", "expected"), CLEAR_CASES)
def test_could_clear(metric: str, threshold: float, n_pos: int, n_neg: int, expected: bool) -> None:
    assert could_clear(metric, threshold, n_pos, n_neg) is expected


@pytest.mark.parametrize(("metric", "threshold", "prevalence"), NEEDED_CASES)
def test_needed_eval_size_is_the_smallest_that_clears(
    metric: str, threshold: float, prevalence: float
) -> None:
    needed = needed_eval_size(metric, threshold, prevalence)
    assert needed is not None
    n_pos = round(needed * prevalence)
    assert could_clear(metric, threshold, n_pos, needed - n_pos)
    n_pos = round((needed - 1) * prevalence)
    assert not could_clear(metric, threshold, n_pos, needed - 1 - n_pos)


def test_no_practical_sample_can_show_a_threshold_next_to_one() -> None:
    check = check_sample("auc", 1 - 1e-9, 500, 500)
    assert (check.sufficient, check.n_eval_needed) == (False, None)
    assert check.explanation.startswith(
        "No sample of up to 10,000,000 patients can show auc >= 1 with 95% confidence"
    )


def test_check_sample_explains_what_is_needed() -> None:
    check = check_sample("auc", 0.8, 1, 5)
    assert not check.sufficient
    assert check.n_eval_needed == 57  # 10 positives at prevalence 1/6 (rounded counts)
    assert (
        "has 6 patients (1 with disease, 5 without), fewer than 10 patients of a class" in check.explanation
    )
    assert "about 57 evaluation patients" in check.explanation


def test_check_sample_passes_a_large_sample() -> None:
    check = check_sample("auc", 0.8, 70, 82)
    assert (check.sufficient, check.n_eval_needed) == (True, 152)


@pytest.mark.parametrize(("metric", "threshold", "message"), BAD_CASES)
def test_check_sample_rejects_bad_settings(metric: str, threshold: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_sample(metric, threshold, 50, 50)
