"""Choosing a threshold on validation: exact thresholds on hand-made splits, ties, fallbacks, config."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fedhealth.training.operating_point import (
    OperatingPointConfig,
    candidates,
    choose_threshold,
    sens_spec,
)

# Split A: J is 0.75 both at 0.325 (sens 4/4, spec 3/4) and at 0.5 (sens 3/4, spec 4/4): a tie.
TIE_LABELS = [0, 0, 0, 1, 0, 1, 1, 1]
TIE_PROBS = [0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8]
# Split B: a nearly all-normal site whose scores sit low: 0.5 calls everyone negative; J peaks at
# 0.115 = (0.08 + 0.15) / 2 with sens 2/2 and spec 5/6.
LOW_LABELS = [0, 0, 0, 0, 0, 0, 1, 1]
LOW_PROBS = [0.01, 0.02, 0.03, 0.05, 0.08, 0.2, 0.15, 0.3]
# (case, labels, probs, config kwargs, threshold, chosen_by, val sensitivity, val specificity)
CHOICE_CASES = [
    ("youden_tie_closest_to_half", TIE_LABELS, TIE_PROBS, {"min_per_class": 4}, 0.5, "youden", 3 / 4, 1.0),
    ("youden_low_scores", LOW_LABELS, LOW_PROBS, {"min_per_class": 2}, 0.115, "youden", 1.0, 5 / 6),
    (
        "target_075",
        TIE_LABELS,
        TIE_PROBS,
        {"method": "target_sensitivity", "target_sensitivity": 0.75, "min_per_class": 4},
        0.5,
        "target_sensitivity",
        3 / 4,
        1.0,
    ),
    (
        "target_09",
        TIE_LABELS,
        TIE_PROBS,
        {"method": "target_sensitivity", "target_sensitivity": 0.9, "min_per_class": 4},
        0.325,
        "target_sensitivity",
        1.0,
        3 / 4,
    ),
    (
        "target_1",
        TIE_LABELS,
        TIE_PROBS,
        {"method": "target_sensitivity", "target_sensitivity": 1.0, "min_per_class": 4},
        0.325,
        "target_sensitivity",
        1.0,
        3 / 4,
    ),
    ("fixed", LOW_LABELS, LOW_PROBS, {"method": "fixed", "threshold": 0.25}, 0.25, "fixed", 1 / 2, 1.0),
    ("too_few_positives", LOW_LABELS, LOW_PROBS, {}, 0.5, "fallback", 0.0, 1.0),
]
# (case, labels, probs, reason fragment): fallbacks to 0.5 with their reason
FALLBACK_CASES = [
    ("one_class", [0] * 10, list(np.linspace(0.1, 0.9, 10)), "10 negative images"),
    ("empty", [], [], "holds 0 positive and 0 negative"),
    ("below_default_min", LOW_LABELS, LOW_PROBS, "at least 5 of each"),
    ("anti_correlated", [1] * 5 + [0] * 5, list(np.linspace(0.05, 0.45, 10)), "no threshold beats chance"),
]
# (case, config kwargs, message fragment)
CONFIG_ERRORS = [
    ("method", {"method": "f1"}, "operating_point.method must be one of"),
    ("calibration", {"calibration": "isotonic"}, "operating_point.calibration must be one of"),
    ("target_zero", {"target_sensitivity": 0.0}, "target_sensitivity must be in (0, 1]"),
    ("target_text", {"target_sensitivity": "0.9"}, "target_sensitivity must be in (0, 1]"),
    ("threshold_one", {"threshold": 1.0}, "threshold must be in (0, 1)"),
    ("floor", {"floor": 1.5}, "floor must be in [0, 1]"),
    ("min_per_class", {"min_per_class": 0}, "min_per_class must be an integer of at least 1"),
    ("min_per_class_bool", {"min_per_class": True}, "min_per_class must be an integer"),
]


@pytest.mark.parametrize(
    ("labels", "probs", "kwargs", "threshold", "chosen_by", "sens", "spec"),
    [c[1:] for c in CHOICE_CASES],
    ids=[c[0] for c in CHOICE_CASES],
)
def test_choose_threshold_exact(labels, probs, kwargs, threshold, chosen_by, sens, spec) -> None:
    choice = choose_threshold(np.array(labels), np.array(probs), OperatingPointConfig(**kwargs))
    assert choice.threshold == pytest.approx(threshold, abs=1e-12)
    assert choice.chosen_by == chosen_by
    assert choice.sensitivity == pytest.approx(sens) and choice.specificity == pytest.approx(spec)
    assert (choice.reason is None) == (chosen_by != "fallback")


@pytest.mark.parametrize(
    ("labels", "probs", "fragment"), [c[1:] for c in FALLBACK_CASES], ids=[c[0] for c in FALLBACK_CASES]
)
def test_degenerate_splits_fall_back_to_half_with_a_reason(labels, probs, fragment) -> None:
    choice = choose_threshold(np.array(labels), np.array(probs), OperatingPointConfig())
    assert (choice.threshold, choice.chosen_by) == (0.5, "fallback")
    assert fragment in choice.reason


def test_candidates_are_midpoints_strictly_inside_zero_one() -> None:
    cands = candidates(np.array([0.2, 0.2, 0.6]))
    np.testing.assert_allclose(cands, [0.1, 0.4, 0.8])
    sens, spec = sens_spec(np.array([1, 0, 1]), np.array([0.2, 0.2, 0.6]), cands)
    np.testing.assert_allclose(sens, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(spec, [0.0, 1.0, 1.0])


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="got 3 and 2"):
        choose_threshold(np.array([0, 1, 1]), np.array([0.2, 0.8]), OperatingPointConfig())


@pytest.mark.parametrize(
    ("kwargs", "fragment"), [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS]
)
def test_config_errors_name_the_field(kwargs, fragment) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        OperatingPointConfig(**kwargs)


def test_config_from_dict() -> None:
    assert (
        OperatingPointConfig.from_dict(None) == OperatingPointConfig.from_dict({}) == OperatingPointConfig()
    )
    got = OperatingPointConfig.from_dict({"method": "target_sensitivity", "target_sensitivity": 0.95})
    assert (got.method, got.target_sensitivity, got.calibration) == ("target_sensitivity", 0.95, "none")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['methd'\]"):
        OperatingPointConfig.from_dict({"methd": "youden"})
    with pytest.raises(ValueError, match="must be an object, got list"):
        OperatingPointConfig.from_dict(["youden"])  # type: ignore[arg-type]
