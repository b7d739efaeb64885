"""A site's evaluation with 95% bootstrap confidence intervals, computed at the site.

Predictions never leave a site: the site computes accuracy, AUC, sensitivity and specificity on
its held-out split and their percentile bootstrap intervals (Efron & Tibshirani 1993, resampling
patients with replacement), and only these numbers travel. A metric that is undefined on the split
(AUC with one class present; sensitivity with no positive patient) is ``None`` with the reason.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

METRICS = ("accuracy", "auc", "sensitivity", "specificity")
DEFAULT_BOOTSTRAP = 1000


def _batch(name: str, pos: np.ndarray, probs: np.ndarray, threshold: float) -> np.ndarray:
    """One metric for each row of ``(B, n)`` label/probability arrays; NaN where undefined.

    AUC is the Mann-Whitney statistic on average ranks (ties count one half), as in
    ``sklearn.metrics.roc_auc_score``, vectorised over the resamples.
    """
    predicted = probs > threshold
    n_pos = pos.sum(axis=1)
    n_neg = pos.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "accuracy":
            return (predicted == pos).mean(axis=1)
        if name == "sensitivity":
            return np.where(n_pos > 0, (predicted & pos).sum(axis=1) / n_pos, np.nan)
        if name == "specificity":
            return np.where(n_neg > 0, (~predicted & ~pos).sum(axis=1) / n_neg, np.nan)
        ranks = rankdata(probs, axis=1)
        u = (ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _undefined_reason(name: str, n_pos: int, n_neg: int) -> str | None:
    if name == "auc" and (n_pos == 0 or n_neg == 0):
        return f"AUC undefined: the split holds one class only ({n_pos} positive, {n_neg} negative)"
    if name == "sensitivity" and n_pos == 0:
        return "sensitivity undefined: no positive patient in the split"
    if name == "specificity" and n_neg == 0:
        return "specificity undefined: no negative patient in the split"
    return None


def evaluate_with_intervals(
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    threshold: float = 0.5,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Point estimates and percentile bootstrap intervals of the four metrics on one split.

    Args:
        labels: 0/1 labels, shape ``(n,)``.
        probs: predicted probabilities of the positive class, shape ``(n,)``.
        threshold: decision threshold for accuracy, sensitivity and specificity.
        n_bootstrap: bootstrap resamples (patients drawn with replacement).
        confidence: two-sided coverage of the interval.
        seed: seed of the resampling (reproducible reports).

    Returns:
        ``{"n", "n_pos", "n_neg", "confidence", <metric>: {"value", "lo", "hi", "reason"}}``; for an
        undefined metric ``value``/``lo``/``hi`` are None and ``reason`` says why. Resamples in
        which a metric is undefined (e.g. one class drawn) are left out of its interval.

    Raises:
        ValueError: on empty input, mismatched shapes or bad settings.
    """
    labels, probs = np.asarray(labels, dtype=float).ravel(), np.asarray(probs, dtype=float).ravel()
    if len(labels) == 0 or len(labels) != len(probs):
        raise ValueError(f"Need equally many labels and probabilities, got {len(labels)} and {len(probs)}.")
    if not 0 < confidence < 1 or n_bootstrap < 1:
        raise ValueError("confidence must be in (0, 1) and n_bootstrap at least 1.")
    positive = labels > 0.5
    n, n_pos = len(labels), int(positive.sum())
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_bootstrap, n))
    out: dict = {"n": n, "n_pos": n_pos, "n_neg": n - n_pos, "confidence": confidence, "threshold": threshold}
    tail = (1 - confidence) / 2 * 100
    for name in METRICS:
        value = float(_batch(name, positive[None, :], probs[None, :], threshold)[0])
        if np.isnan(value):
            out[name] = {
                "value": None,
                "lo": None,
                "hi": None,
                "reason": _undefined_reason(name, n_pos, n - n_pos),
            }
            continue
        samples = _batch(name, positive[draws], probs[draws], threshold)
        samples = samples[~np.isnan(samples)]
        lo, hi = np.percentile(samples, [tail, 100 - tail]) if len(samples) else (None, None)
        out[name] = {"value": value, "lo": _num(lo), "hi": _num(hi), "reason": None}
    return out


def _num(x: object) -> float | None:
    return None if x is None else float(x)
