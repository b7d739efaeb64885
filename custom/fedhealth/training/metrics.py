"""Binary classification metrics on one site's predictions (aggregate numbers only)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score


def accuracy(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """Share of patients whose thresholded probability equals the label (FLamby's metric)."""
    return float(((probs > threshold) == (labels > 0.5)).mean())


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC; NaN when the split holds one class only (a site may be all positive)."""
    if len(np.unique(labels)) < 2:
        return math.nan
    return float(roc_auc_score(labels, probs))


def clean_metrics(metrics: dict) -> dict:
    """NaN (e.g. AUC on a one-class split) becomes None, nested dicts included, so JSON stays standard."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            value = clean_metrics(value)
        out[key] = None if isinstance(value, float) and math.isnan(value) else value
    return out
