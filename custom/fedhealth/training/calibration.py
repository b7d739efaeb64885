"""Per-site calibration of a binary classifier's probabilities, fitted on the validation split only.

Two one-step recalibrations of the logit ``z = log(p / (1 - p))``:

* **temperature** scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"):
  ``p' = sigmoid(z / T)``, one parameter ``T > 0`` fitted by minimising the negative log-likelihood;
* **Platt** scaling (Platt 1999, "Probabilistic Outputs for Support Vector Machines"):
  ``p' = sigmoid(a z + b)``, a logistic regression on the logit, fitted with Platt's smoothed targets
  ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` so that a separable split still has a finite fit.

Both are monotone increasing (``T > 0``, ``a > 0``), so AUC is unchanged and the order of the images
is kept; what moves is the value of the probabilities and hence where a threshold sits. A split with
one class only cannot be fitted: the identity is returned with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit

CALIBRATIONS = ("none", "temperature", "platt")
EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before taking the logit
LOG_T_BOUNDS = (np.log(1e-2), np.log(1e2))
PLATT_A_BOUNDS = (1e-3, 1e3)  # a > 0 keeps the map increasing (AUC and image order unchanged)


def logit(probs: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[EPS, 1 - EPS]`` (a saturated sigmoid stays finite)."""
    p = np.clip(np.asarray(probs, dtype=float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood (binary cross-entropy) of 0/1 (or smoothed) ``labels``."""
    y = np.asarray(labels, dtype=float)
    p = np.clip(np.asarray(probs, dtype=float), EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration: ``kind``, its parameters, the validation NLL before and after, a reason.

    ``kind`` is ``"none"`` when none was asked for or when the fit was impossible (``reason`` says why).
    """

    kind: str = "none"
    params: dict[str, float] = field(default_factory=dict)
    nll_before: float | None = None
    nll_after: float | None = None
    reason: str | None = None

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """The calibrated probabilities of ``probs`` (a copy; the identity for ``"none"``)."""
        probs = np.asarray(probs, dtype=float)
        if self.kind == "temperature":
            return expit(logit(probs) / self.params["temperature"])
        if self.kind == "platt":
            return expit(self.params["a"] * logit(probs) + self.params["b"])
        return probs.copy()

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "params": dict(self.params),
            "val_nll_before": self.nll_before,
            "val_nll_after": self.nll_after,
            "reason": self.reason,
        }


def fit_temperature(labels: np.ndarray, probs: np.ndarray) -> float:
    """The temperature ``T`` minimising the NLL of ``sigmoid(logit(probs) / T)`` (``T`` in [0.01, 100])."""
    z, y = logit(probs), np.asarray(labels, dtype=float)
    found = minimize_scalar(
        lambda log_t: nll(y, expit(z / np.exp(log_t))), bounds=LOG_T_BOUNDS, method="bounded"
    )
    return float(np.exp(found.x))


def fit_platt(labels: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """Platt's ``(a, b)``: logistic regression of the smoothed targets on ``logit(probs)``, ``a > 0``."""
    z, y = logit(probs), np.asarray(labels, dtype=float) > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    target = np.where(y, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def loss(ab: np.ndarray) -> float:
        return nll(target, expit(ab[0] * z + ab[1]))

    found = minimize(loss, x0=np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[PLATT_A_BOUNDS, (None, None)])
    return float(found.x[0]), float(found.x[1])


def fit_calibration(labels: np.ndarray, probs: np.ndarray, kind: str) -> Calibration:
    """Fit ``kind`` (``none``, ``temperature``, ``platt``) on one split's labels and probabilities.

    Raises:
        ValueError: an unknown ``kind``, or labels and probabilities of different lengths.
    """
    if kind not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {list(CALIBRATIONS)}, got {kind!r}.")
    labels, probs = np.asarray(labels, dtype=float).ravel(), np.asarray(probs, dtype=float).ravel()
    if len(labels) != len(probs):
        raise ValueError(f"Need equally many labels and probabilities, got {len(labels)} and {len(probs)}.")
    if kind == "none":
        return Calibration()
    n_pos = int((labels > 0.5).sum())
    if n_pos == 0 or n_pos == len(labels):
        return Calibration(
            reason=f"{kind} calibration not fitted: the validation split holds one class only "
            f"({n_pos} positive, {len(labels) - n_pos} negative); probabilities left as they are"
        )
    if kind == "temperature":
        params = {"temperature": fit_temperature(labels, probs)}
    else:
        a, b = fit_platt(labels, probs)
        params = {"a": a, "b": b}
    fitted = Calibration(kind, params)
    return Calibration(kind, params, nll(labels, probs), nll(labels, fitted.apply(probs)))
