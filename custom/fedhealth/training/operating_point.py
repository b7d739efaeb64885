"""A site's operating point: the decision threshold it chooses on its own validation split.

A model chosen by AUC can rank a site's images well and still put the whole site on one side of 0.5
(a site that is nearly all normal, a scanner that shifts every score). Each site therefore picks its
threshold on its validation split, never on test:

* ``youden``: the threshold maximising Youden's J = sensitivity + specificity - 1 (Youden 1950,
  "Index for rating diagnostic tests"); ties go to the threshold closest to 0.5;
* ``target_sensitivity``: the highest threshold whose sensitivity reaches the configured target
  (a screening site that must not miss more than 1 - target of its positives);
* ``fixed``: the configured threshold as it is.

Candidate thresholds are the midpoints between consecutive distinct scores (with 0 and 1 as outer
ends), so a chosen threshold never equals a validation score and lies in (0, 1). A split with fewer than
``min_per_class`` images of either class, or on which no threshold beats chance (J <= 0), falls back to
0.5 with the reason. Predicted positive means ``score > threshold``, as in
:func:`fedhealth.training.site_metrics.evaluate_with_intervals`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from fedhealth.training.calibration import CALIBRATIONS

METHODS = ("youden", "target_sensitivity", "fixed")
FALLBACK_THRESHOLD = 0.5
TIE_TOL = 1e-12


@dataclass(frozen=True)
class OperatingPointConfig:
    """How a site chooses its threshold (the imaging task's ``operating_point`` argument).

    Args:
        method: ``youden``, ``target_sensitivity`` or ``fixed``.
        target_sensitivity: the sensitivity ``target_sensitivity`` must reach, in (0, 1].
        threshold: the threshold of ``fixed``, in (0, 1).
        calibration: ``none``, ``temperature`` or ``platt``, fitted on the site's validation split.
        min_per_class: fewest validation images of each class needed to choose (fewer: 0.5).
        floor: the sensitivity and specificity a usable threshold must reach (the "0.5 would have
            failed" rule of :func:`fedhealth.training.site_operating_point.failed_at_half`).
    """

    method: str = "youden"
    target_sensitivity: float = 0.9
    threshold: float = FALLBACK_THRESHOLD
    calibration: str = "none"
    min_per_class: int = 5
    floor: float = 0.5

    def __post_init__(self) -> None:
        where = "operating_point"
        if self.method not in METHODS:
            raise ValueError(f"{where}.method must be one of {list(METHODS)}, got {self.method!r}.")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(
                f"{where}.calibration must be one of {list(CALIBRATIONS)}, got {self.calibration!r}."
            )
        if not _number(self.target_sensitivity) or not 0 < self.target_sensitivity <= 1:
            raise ValueError(
                f"{where}.target_sensitivity must be in (0, 1], got {self.target_sensitivity!r}."
            )
        if not _number(self.threshold) or not 0 < self.threshold < 1:
            raise ValueError(f"{where}.threshold must be in (0, 1), got {self.threshold!r}.")
        if not _number(self.floor) or not 0 <= self.floor <= 1:
            raise ValueError(f"{where}.floor must be in [0, 1], got {self.floor!r}.")
        if (
            isinstance(self.min_per_class, bool)
            or not isinstance(self.min_per_class, int)
            or self.min_per_class < 1
        ):
            raise ValueError(
                f"{where}.min_per_class must be an integer of at least 1, got {self.min_per_class!r}."
            )

    @classmethod
    def from_dict(cls, args: Mapping[str, object] | None) -> OperatingPointConfig:
        """The config from a job's ``operating_point`` object (None or ``{}``: the defaults).

        Raises:
            ValueError: not an object, an unknown key, or a value out of range.
        """
        if args is None:
            return cls()
        if not isinstance(args, Mapping):
            raise ValueError(f"operating_point must be an object, got {type(args).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"operating_point has unknown key(s) {unknown}; known: {sorted(known)}.")
        return cls(**args)  # type: ignore[arg-type]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold, how it was chosen (``method`` or ``fallback``), and its validation figures."""

    threshold: float
    chosen_by: str
    sensitivity: float | None
    specificity: float | None
    reason: str | None = None

    def as_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "chosen_by": self.chosen_by,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "reason": self.reason,
        }


def sens_spec(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity of ``probs > t`` for each ``t`` (NaN where a class is absent)."""
    positive = np.asarray(labels, dtype=float).ravel() > 0.5
    probs = np.asarray(probs, dtype=float).ravel()
    pos, neg = np.sort(probs[positive]), np.sort(probs[~positive])
    t = np.atleast_1d(np.asarray(thresholds, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (len(pos) - np.searchsorted(pos, t, side="right")) / (len(pos) or np.nan)
        spec = np.searchsorted(neg, t, side="right") / (len(neg) or np.nan)
    return sens, spec


def candidates(probs: np.ndarray) -> np.ndarray:
    """Midpoints between consecutive distinct values of ``probs`` with 0 and 1 added (ascending)."""
    values = np.unique(np.concatenate([[0.0, 1.0], np.clip(np.asarray(probs, dtype=float).ravel(), 0, 1)]))
    return (values[:-1] + values[1:]) / 2


def choose_threshold(labels: np.ndarray, probs: np.ndarray, config: OperatingPointConfig) -> ThresholdChoice:
    """The threshold ``config.method`` picks on one (validation) split.

    Raises:
        ValueError: labels and probabilities of different lengths (an empty split falls back to 0.5).
    """
    labels, probs = np.asarray(labels, dtype=float).ravel(), np.asarray(probs, dtype=float).ravel()
    if len(labels) != len(probs):
        raise ValueError(f"Need equally many labels and probabilities, got {len(labels)} and {len(probs)}.")
    if config.method == "fixed":
        return _at(labels, probs, config.threshold, "fixed")
    n_pos = int((labels > 0.5).sum())
    n_neg = len(labels) - n_pos
    if min(n_pos, n_neg) < config.min_per_class:
        return _at(
            labels,
            probs,
            FALLBACK_THRESHOLD,
            "fallback",
            f"the validation split holds {n_pos} positive and {n_neg} negative images; choosing a "
            f"threshold needs at least {config.min_per_class} of each, so 0.5 is kept",
        )
    cands = candidates(probs)
    sens, spec = sens_spec(labels, probs, cands)
    if config.method == "target_sensitivity":
        reaching = np.flatnonzero(sens >= config.target_sensitivity - TIE_TOL)
        return _at(labels, probs, float(cands[reaching[-1]]), "target_sensitivity")
    j = sens + spec - 1
    if j.max() <= TIE_TOL:
        return _at(
            labels,
            probs,
            FALLBACK_THRESHOLD,
            "fallback",
            f"no threshold beats chance on the validation split (best Youden J {j.max():.3f}); 0.5 is kept",
        )
    best = np.flatnonzero(j >= j.max() - TIE_TOL)
    pick = best[np.argmin(np.abs(cands[best] - FALLBACK_THRESHOLD))]  # ties: closest to 0.5, then lowest
    return _at(labels, probs, float(cands[pick]), "youden")


def _at(
    labels: np.ndarray, probs: np.ndarray, threshold: float, chosen_by: str, reason: str | None = None
) -> ThresholdChoice:
    sens, spec = sens_spec(labels, probs, np.array([threshold]))
    return ThresholdChoice(threshold, chosen_by, _num(sens[0]), _num(spec[0]), reason)


def _num(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
