"""Can an evaluation sample of this size show that a metric clears a threshold at all?

Before a model is called fit on a new site, the site's evaluation sample must be large enough
that even a *perfect* model could have a 95% interval whose lower bound reaches the threshold.
Otherwise any verdict is noise, and the answer is "insufficient data", never "not fit".

The rules, all conservative screens that use only the class counts:

* **AUC** (Hanley & McNeil 1982, "The meaning and use of the area under a receiver operating
  characteristic (ROC) curve", Radiology 143:29-36): the standard error of an AUC estimate at a
  true value ``A`` with ``n_pos`` diseased and ``n_neg`` healthy patients is
  ``SE^2 = (A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)) / (n_pos n_neg)`` with
  ``Q1 = A/(2-A)`` and ``Q2 = 2A^2/(1+A)``. To show ``AUC >= t`` an observed AUC must lie
  ``z * SE(t)`` above ``t``; when ``t + z * SE(t) > 1`` no observation can, so the sample is too
  small.
* **Accuracy, sensitivity, specificity** (Wilson 1927, "Probable inference, the law of succession,
  and statistical inference", JASA 22:209-212): with ``k = n`` successes out of ``n`` (a perfect
  model) the Wilson lower bound is ``n / (n + z^2)``; the sample is too small when that is below
  ``t``, i.e. when ``n < t z^2 / (1 - t)``. ``n`` counts all patients for accuracy, the diseased
  for sensitivity and the healthy for specificity.
* **Every metric**: at least :data:`MIN_PER_CLASS` patients of each class, since a bootstrap
  interval over fewer patients of a class is unreliable and a site's case mix is not represented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054  # two-sided 95%
MIN_PER_CLASS = 10
SUPPORTED_METRICS = ("auc", "accuracy", "sensitivity", "specificity")
_MAX_N = 10_000_000


@dataclass(frozen=True)
class SampleCheck:
    """Whether an evaluation sample can show ``metric >= threshold``, and what it would take.

    Attributes:
        sufficient: a perfect model's 95% lower bound could reach the threshold on this sample.
        n_eval_needed: smallest evaluation sample (same class balance) for which it could; None when
            no sample size can (threshold of 1 or more).
        explanation: one sentence for the report (counts only).
    """

    sufficient: bool
    n_eval_needed: int | None
    explanation: str


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC estimate at true value ``auc`` (Hanley & McNeil 1982, Table/eq. 2).

    Raises:
        ValueError: for an AUC outside [0, 1] or a class with no patient.
    """
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"AUC must be in [0, 1], got {auc}.")
    if n_pos < 1 or n_neg < 1:
        raise ValueError(
            f"The AUC needs patients of both classes, got {n_pos} positive and {n_neg} negative."
        )
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc**2 / (1.0 + auc)
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    return math.sqrt(max(var, 0.0) / (n_pos * n_neg))


def wilson_perfect_lower(n: int, *, z: float = Z_95) -> float:
    """Wilson lower bound for ``n`` successes out of ``n`` trials: ``n / (n + z^2)`` (0 when n is 0)."""
    return n / (n + z**2) if n > 0 else 0.0


def _relevant_count(metric: str, n_pos: int, n_neg: int) -> int:
    return {"accuracy": n_pos + n_neg, "sensitivity": n_pos, "specificity": n_neg}[metric]


def could_clear(metric: str, threshold: float, n_pos: int, n_neg: int, *, z: float = Z_95) -> bool:
    """True when a perfect model's interval on ``n_pos``/``n_neg`` patients could reach ``threshold``."""
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        return False
    if metric == "auc":
        return threshold + z * hanley_mcneil_se(threshold, n_pos, n_neg) <= 1.0
    return wilson_perfect_lower(_relevant_count(metric, n_pos, n_neg), z=z) >= threshold


def _split(n: int, prevalence: float) -> tuple[int, int]:
    n_pos = round(n * prevalence)
    return n_pos, n - n_pos


def needed_eval_size(metric: str, threshold: float, prevalence: float, *, z: float = Z_95) -> int | None:
    """Smallest evaluation sample with this prevalence on which :func:`could_clear` holds.

    Exponential then binary search over ``n`` (the screens fall with ``n``; rounding of the class
    counts makes the answer approximate by a patient or two). None when no size is enough.
    """
    if threshold >= 1.0:
        return None
    prevalence = min(max(prevalence, 1e-3), 1 - 1e-3)
    hi = 2
    while not could_clear(metric, threshold, *_split(hi, prevalence), z=z):
        hi *= 2
        if hi > _MAX_N:
            return None
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if could_clear(metric, threshold, *_split(mid, prevalence), z=z):
            hi = mid
        else:
            lo = mid
    return hi


def check_sample(metric: str, threshold: float, n_pos: int, n_neg: int) -> SampleCheck:
    """Screen one evaluation sample; see the module docstring for the rules and references.

    Raises:
        ValueError: for an unknown metric or a threshold outside (0, 1) (no finite sample shows a
            metric of at least 1 with 95% confidence).
    """
    if metric not in SUPPORTED_METRICS:
        raise ValueError(f"metric must be one of {SUPPORTED_METRICS}, not {metric!r}.")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
    n = n_pos + n_neg
    if could_clear(metric, threshold, n_pos, n_neg):
        return SampleCheck(True, n, f"{n} evaluation patients can show {metric} >= {threshold:g}.")
    prevalence = n_pos / n if n_pos and n_neg else 0.5
    needed = needed_eval_size(metric, threshold, prevalence)
    have = f"the evaluation part has {n} patients ({n_pos} with disease, {n_neg} without)"
    if needed is None:
        return SampleCheck(
            False,
            None,
            f"No sample of up to {_MAX_N:,} patients can show {metric} >= {threshold:g} "
            f"with 95% confidence; {have}.",
        )
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        why = f"fewer than {MIN_PER_CLASS} patients of a class"
    elif metric == "auc":
        why = "even a perfect AUC could not sit 1.96 Hanley-McNeil standard errors above the threshold"
    else:
        why = "even a perfect score's Wilson lower bound would stay below the threshold"
    return SampleCheck(
        False,
        needed,
        f"Too few patients to show {metric} >= {threshold:g} with 95% confidence: {have}, {why}; "
        f"about {needed} evaluation patients with this case mix would be needed.",
    )
