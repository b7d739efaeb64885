"""A site's operating-point report: chosen on val, measured on test, the "0.5 would have failed" rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from fedhealth.training.operating_point import OperatingPointConfig
from fedhealth.training.site_operating_point import failed_at_half, site_operating_point


def _iv(sens: float | None, spec: float | None, threshold: float = 0.2) -> dict:
    return {"threshold": threshold, "sensitivity": {"value": sens}, "specificity": {"value": spec}}


# (case, at 0.5 (sens, spec), at the chosen threshold (sens, spec), floor, sentence fragment or None)
RULE_CASES = [
    (
        "sens_fails_chosen_holds",
        (0.3, 0.99),
        (0.8, 0.9),
        0.5,
        "test sensitivity 0.300 would fall below the floor 0.5",
    ),
    ("both_fail", (0.4, 0.45), (0.7, 0.6), 0.5, "sensitivity 0.400 and specificity 0.450"),
    ("half_fine", (0.6, 0.9), (0.8, 0.8), 0.5, None),
    ("chosen_fails_too", (0.3, 0.99), (0.8, 0.4), 0.5, None),
    ("higher_floor", (0.6, 0.9), (0.8, 0.8), 0.7, "sensitivity 0.600 would fall below the floor 0.7"),
    ("undefined_on_test", (None, 0.9), (None, 0.8), 0.5, None),
]


@pytest.mark.parametrize(
    ("half", "chosen", "floor", "fragment"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_half_failed_rule(half, chosen, floor, fragment) -> None:
    sentence = failed_at_half(_iv(*half, threshold=0.5), _iv(*chosen), floor)
    if fragment is None:
        assert sentence is None
    else:
        assert fragment in sentence and "the threshold 0.200 chosen on validation" in sentence


def _low_scoring_site(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A site with 20% positives whose scores sit low: 0.5 misses most positives, AUC stays high."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(float)
    return y, expit(rng.normal(2.0 * y - 3.0, 1.0))


def test_low_scoring_site_is_flagged_and_intervals_use_the_chosen_threshold() -> None:
    val, test = _low_scoring_site(300, 1), _low_scoring_site(400, 2)
    report, intervals = site_operating_point(val, test, OperatingPointConfig(), n_bootstrap=200)
    assert report["chosen_by"] == "youden" and 0.0 < report["threshold"] < 0.5
    assert intervals["threshold"] == report["threshold"]
    assert report["test"]["sensitivity"] == intervals["sensitivity"]
    assert report["test_at_0_5"]["sensitivity"]["value"] < 0.5 <= report["test"]["sensitivity"]["value"]
    assert report["test"]["sensitivity"]["lo"] <= report["test"]["sensitivity"]["value"]
    assert report["half_failed"].startswith("at 0.5 its test sensitivity")
    assert report["val"]["n_pos"] + report["val"]["n_neg"] == 300
    assert report["calibration"]["kind"] == "none"


def test_test_labels_never_move_the_threshold() -> None:
    val, (test_y, test_p) = _low_scoring_site(300, 1), _low_scoring_site(400, 2)
    config = OperatingPointConfig(calibration="platt")
    first, _ = site_operating_point(val, (test_y, test_p), config, n_bootstrap=50)
    shuffled = np.random.default_rng(3).permutation(test_y)
    second, _ = site_operating_point(val, (shuffled, test_p), config, n_bootstrap=50)
    assert first["threshold"] == second["threshold"] and first["calibration"] == second["calibration"]
    assert first["val"] == second["val"]
    assert first["test"] != second["test"]  # the test figures do read the (shuffled) labels


def test_calibrated_threshold_and_fitted_parameter_are_reported() -> None:
    val, test = _low_scoring_site(300, 1), _low_scoring_site(400, 2)
    report, intervals = site_operating_point(
        val, test, OperatingPointConfig(calibration="temperature"), n_bootstrap=50
    )
    cal = report["calibration"]
    assert cal["kind"] == "temperature" and cal["params"]["temperature"] > 0
    assert cal["val_nll_after"] <= cal["val_nll_before"]
    plain, plain_iv = site_operating_point(val, test, OperatingPointConfig(), n_bootstrap=50)
    assert intervals["auc"]["value"] == pytest.approx(plain_iv["auc"]["value"], abs=1e-12)  # monotone map
    assert report["val"]["sensitivity"] == plain["val"]["sensitivity"]  # same images on each side of it
