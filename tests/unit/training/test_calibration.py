"""Per-site calibration: exact fits on hand-made splits, NLL lowered when miscalibrated, order kept."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from fedhealth.training.calibration import Calibration, fit_calibration, logit, nll

# Logit +2 with 3 positives of 4, logit -2 with 1 of 4. Temperature: the MLE puts p(+2) at 3/4, so
# 2 / T = ln 3. Platt's smoothed targets are 5/6 and 1/6 (4 positives, 4 negatives): the mean target at
# +2 is (3 * 5/6 + 1/6) / 4 = 2/3, so 2a + b = ln 2 and, by symmetry, b = 0.
HAND_LABELS = np.array([1, 1, 1, 0, 1, 0, 0, 0], dtype=float)
HAND_PROBS = expit(np.array([2.0] * 4 + [-2.0] * 4))
# (kind, parameter, exact value)
EXACT_CASES = [
    ("temperature", "temperature", 2 / np.log(3)),
    ("platt", "a", np.log(2) / 2),
    ("platt", "b", 0.0),
]


def _overconfident(n: int = 400, scale: float = 4.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from sigmoid(z); the model reports sigmoid(scale * z): overconfident by ``scale``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    return (rng.random(n) < expit(z)).astype(float), expit(scale * z)


@pytest.mark.parametrize(("kind", "param", "value"), EXACT_CASES, ids=[f"{c[0]}_{c[1]}" for c in EXACT_CASES])
def test_exact_fit_on_hand_made_split(kind: str, param: str, value: float) -> None:
    fitted = fit_calibration(HAND_LABELS, HAND_PROBS, kind)
    assert fitted.kind == kind and fitted.reason is None
    assert fitted.params[param] == pytest.approx(value, abs=1e-4)


def test_temperature_recovers_p_three_quarters() -> None:
    fitted = fit_calibration(HAND_LABELS, HAND_PROBS, "temperature")
    np.testing.assert_allclose(fitted.apply(HAND_PROBS), [0.75] * 4 + [0.25] * 4, atol=1e-5)
    assert fitted.nll_after == pytest.approx(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)), abs=1e-6)
    assert fitted.nll_after < fitted.nll_before == pytest.approx(nll(HAND_LABELS, HAND_PROBS))


@pytest.mark.parametrize("kind", ["temperature", "platt"])
def test_calibration_lowers_nll_and_keeps_auc(kind: str) -> None:
    labels, probs = _overconfident()
    fitted = fit_calibration(labels, probs, kind)
    assert fitted.nll_after < 0.8 * fitted.nll_before
    assert roc_auc_score(labels, fitted.apply(probs)) == pytest.approx(
        roc_auc_score(labels, probs), abs=1e-12
    )
    if kind == "temperature":
        assert fitted.params["temperature"] == pytest.approx(4.0, rel=0.25)


@pytest.mark.parametrize("kind", ["temperature", "platt"])
def test_one_class_split_is_not_fitted(kind: str) -> None:
    fitted = fit_calibration(np.zeros(6), np.linspace(0.1, 0.6, 6), kind)
    assert fitted.kind == "none" and "one class only (0 positive, 6 negative)" in fitted.reason
    np.testing.assert_allclose(fitted.apply([0.3]), [0.3])


def test_none_is_the_identity_and_bad_input_is_refused() -> None:
    assert fit_calibration(HAND_LABELS, HAND_PROBS, "none") == Calibration()
    with pytest.raises(ValueError, match=r"calibration must be one of \['none', 'temperature', 'platt'\]"):
        fit_calibration(HAND_LABELS, HAND_PROBS, "isotonic")
    with pytest.raises(ValueError, match="got 8 and 2"):
        fit_calibration(HAND_LABELS, [0.1, 0.2], "platt")


def test_logit_of_saturated_probabilities_is_finite() -> None:
    z = logit(np.array([0.0, 0.5, 1.0]))
    assert np.all(np.isfinite(z)) and z[1] == 0.0 and z[0] == pytest.approx(-z[2])
