"""A site's metrics with bootstrap intervals: exact point values, undefined metrics, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from fedhealth.training.site_metrics import METRICS, evaluate_with_intervals

# (case, n, prevalence, decimals the scores are rounded to: few decimals -> many ties)
AUC_CASES = [
    ("ties_heavy", 60, 0.4, 1),
    ("ties_some", 150, 0.3, 2),
    ("no_ties", 200, 0.5, 12),
    ("rare_positive", 80, 0.1, 1),
]
# Hand-made split; 0.5 equals the threshold and counts as negative (probs > threshold).
HAND_LABELS = [1, 1, 1, 0, 0, 0, 0, 1]
HAND_PROBS = [0.9, 0.6, 0.4, 0.2, 0.7, 0.1, 0.5, 0.5]
# (metric, value): TP 2 of 4 positives, TN 3 of 4 negatives; AUC 11.5 of 16 pairs (one tie at 0.5)
HAND_CASES = [("sensitivity", 2 / 4), ("specificity", 3 / 4), ("accuracy", 5 / 8), ("auc", 11.5 / 16)]
# (case, labels, metric that is undefined, reason fragment)
ONE_CLASS_CASES = [
    ("negatives_only_auc", [0.0] * 12, "auc", "one class"),
    ("negatives_only_sens", [0.0] * 12, "sensitivity", "no positive patient"),
    ("positives_only_auc", [1.0] * 12, "auc", "one class"),
    ("positives_only_spec", [1.0] * 12, "specificity", "no negative patient"),
]
# (case, labels, probs, kwargs, message fragment)
ERROR_CASES = [
    ("empty", [], [], {}, "got 0 and 0"),
    ("mismatched", [0, 1, 1], [0.2, 0.8], {}, "got 3 and 2"),
    ("confidence", [0, 1], [0.2, 0.8], {"confidence": 1.0}, "confidence must be in"),
    ("no_resamples", [0, 1], [0.2, 0.8], {"n_bootstrap": 0}, "n_bootstrap at least 1"),
]
# Coverage study: positives ~ N(1, 1), negatives ~ N(0, 1), prevalence 1/2, predicted positive when the
# score exceeds 0.5. Population AUC = Phi(1 / sqrt(2)); accuracy = Phi(0.5) for either class.
TRUE = {"auc": norm.cdf(1 / np.sqrt(2)), "accuracy": norm.cdf(0.5)}
REPLICATES, N, N_BOOT = 200, 200, 300
COVERAGE_BAND = (0.88, 0.99)


def _split(n: int, prevalence: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < prevalence).astype(float)
    return labels, expit(rng.normal(labels, 1.0) - 0.5)


@pytest.fixture(scope="module")
def replicates() -> list[dict]:
    """The evaluation of ``REPLICATES`` independent synthetic splits (about one second)."""
    return [
        evaluate_with_intervals(*_split(N, 0.5, 1000 + i), n_bootstrap=N_BOOT, seed=i)
        for i in range(REPLICATES)
    ]


@pytest.mark.parametrize(("case", "n", "prevalence", "decimals"), AUC_CASES)
def test_auc_matches_sklearn(case, n, prevalence, decimals):
    labels, probs = _split(n, prevalence, seed=n)
    probs = np.round(probs, decimals)
    out = evaluate_with_intervals(labels, probs, n_bootstrap=20)
    assert out["auc"]["value"] == pytest.approx(roc_auc_score(labels, probs), abs=1e-12)
    assert out["n"] == n and out["n_pos"] == int(labels.sum()) and out["n_neg"] == n - int(labels.sum())


@pytest.mark.parametrize(("metric", "value"), HAND_CASES)
def test_hand_made_values(metric, value):
    out = evaluate_with_intervals(HAND_LABELS, HAND_PROBS, threshold=0.5, n_bootstrap=50)
    assert out[metric]["value"] == pytest.approx(value)
    assert out[metric]["reason"] is None
    assert out["threshold"] == 0.5 and out["confidence"] == 0.95


@pytest.mark.parametrize(("case", "labels", "metric", "reason"), ONE_CLASS_CASES)
def test_one_class_split(case, labels, metric, reason):
    probs = np.linspace(0.05, 0.95, len(labels))
    out = evaluate_with_intervals(labels, probs, n_bootstrap=50)
    assert (out[metric]["value"], out[metric]["lo"], out[metric]["hi"]) == (None, None, None)
    assert reason in out[metric]["reason"]
    assert out["accuracy"]["value"] == pytest.approx(0.5)  # half the scores lie above 0.5
    assert out["accuracy"]["lo"] is not None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intervals_contain_point_estimate(seed):
    out = evaluate_with_intervals(*_split(120, 0.4, seed), n_bootstrap=400, seed=seed)
    for metric in METRICS:
        m = out[metric]
        assert 0.0 <= m["lo"] <= m["value"] <= m["hi"] <= 1.0
        assert 0.0 < m["hi"] - m["lo"] < 0.5


@pytest.mark.parametrize("metric", sorted(TRUE))
def test_bootstrap_coverage(replicates, metric):
    covered = [r[metric]["lo"] <= TRUE[metric] <= r[metric]["hi"] for r in replicates]
    coverage = float(np.mean(covered))
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], f"{metric} coverage {coverage:.3f}"
    # the point estimates centre on the population value (SE of the mean about 0.002)
    assert np.mean([r[metric]["value"] for r in replicates]) == pytest.approx(TRUE[metric], abs=0.01)


def test_same_seed_same_output():
    labels, probs = _split(100, 0.5, seed=7)
    first = evaluate_with_intervals(labels, probs, n_bootstrap=200, seed=3)
    assert evaluate_with_intervals(labels, probs, n_bootstrap=200, seed=3) == first
    other = evaluate_with_intervals(labels, probs, n_bootstrap=200, seed=4)
    assert other["auc"]["value"] == first["auc"]["value"]
    assert (other["auc"]["lo"], other["auc"]["hi"]) != (first["auc"]["lo"], first["auc"]["hi"])


@pytest.mark.parametrize(("case", "labels", "probs", "kwargs", "message"), ERROR_CASES)
def test_bad_input_raises(case, labels, probs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_with_intervals(labels, probs, **kwargs)
