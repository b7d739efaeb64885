"""Feature encoding and scaling for the heart data, with federated statistics.

Encoding follows FLamby: the ten raw columns, ``cp`` and ``restecg`` one-hot with the first level
dropped, giving 13 features in FLamby's order. The kit's default also treats a recorded
cholesterol of 0 as "not measured" (all of Switzerland, a quarter of VA Long Beach): the value
becomes missing, is imputed with the scaling mean (0 after scaling) and a ``chol_missing``
indicator is added (14 features).

Global scaling without moving data: each site sends per-feature counts, sums and sums of squares
of its training features (:func:`local_moments`); the server adds them (:func:`combine_moments`)
and every site scales with the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedhealth.constants import S_COUNT, S_FEATURES, S_MEAN, S_STD, S_SUM, S_SUMSQ

_NUMERIC = ("age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak")
_DUMMIES = (("cp", (2, 3, 4)), ("restecg", (1, 2)))
CHOL_MISSING = "chol_missing"
EPS = 1e-9  # FLamby's guard against a zero standard deviation


def feature_names(chol_zero_as_missing: bool) -> list[str]:
    """Names of the encoded features in column order."""
    names = list(_NUMERIC) + [f"{col}_{level}" for col, levels in _DUMMIES for level in levels]
    return names + [CHOL_MISSING] if chol_zero_as_missing else names


def encode(raw: pd.DataFrame, *, chol_zero_as_missing: bool) -> np.ndarray:
    """Encode raw UCI columns into a float matrix; missing cholesterol stays NaN."""
    parts = [raw[list(_NUMERIC)].to_numpy(dtype="float64")]
    for col, levels in _DUMMIES:
        parts.append(np.stack([(raw[col].to_numpy() == level).astype("float64") for level in levels], 1))
    x = np.concatenate(parts, axis=1)
    if chol_zero_as_missing:
        chol = _NUMERIC.index("chol")
        missing = x[:, chol] == 0
        x[missing, chol] = np.nan
        x = np.concatenate([x, missing[:, None].astype("float64")], axis=1)
    return x


def local_moments(x: np.ndarray, *, min_cell: int | None = None) -> dict[str, list[float | None]]:
    """Per-feature count, sum and sum of squares over the observed (non-NaN) values.

    ``min_cell``: what a site releases (federated statistics). A feature observed in fewer than
    ``min_cell`` patients, or a 0/1 feature (a one-hot category or a missingness indicator, whose sum
    IS a category count) with fewer than ``min_cell`` ones or zeros, is a small cell: its three
    moments are sent as ``None`` and :func:`combine_moments` scales it from the other sites.
    """
    observed = ~np.isnan(x)
    filled = np.where(observed, x, 0.0)
    count = observed.sum(0).astype(float)
    out: dict[str, list[float | None]] = {
        S_COUNT: count.tolist(),
        S_SUM: filled.sum(0).tolist(),
        S_SUMSQ: (filled**2).sum(0).tolist(),
    }
    if min_cell is None:
        return out
    for j in range(x.shape[1]):
        values = x[observed[:, j], j]
        binary = values.size > 0 and bool(np.isin(values, (0.0, 1.0)).all())
        ones = float(values.sum()) if binary else None
        cells = [count[j]] + ([ones, count[j] - ones] if binary else [])
        if any(0 < c < min_cell for c in cells):
            for key in (S_COUNT, S_SUM, S_SUMSQ):
                out[key][j] = None
    return out


def combine_moments(
    moments: list[dict[str, list[float]]], *, allow_unobserved: bool = False
) -> dict[str, list[float]]:
    """Global mean and (unbiased) standard deviation from several sites' moments.

    Args:
        moments: each site's :func:`local_moments` (a ``None`` entry: that site withheld the feature).
        allow_unobserved: give a feature seen fewer than twice mean 0 (if never seen) and standard
            deviation 0 instead of raising; a site's own scaling needs this (Switzerland never
            records cholesterol), global scaling does not.

    Raises:
        ValueError: no moments, or a feature observed fewer than twice while not allowed.
    """
    if not moments:
        raise ValueError("combine_moments needs the moments of at least one site.")
    count, total, total_sq = (_column_sum(moments, key) for key in (S_COUNT, S_SUM, S_SUMSQ))
    withheld = np.array([all(m[S_COUNT][j] is None for m in moments) for j in range(len(count))])
    if (count[~withheld] < 2).any() and not allow_unobserved:
        raise ValueError("Every feature needs at least two observed values across sites to be scaled.")
    mean = np.divide(total, count, out=np.zeros_like(total, dtype="float64"), where=count > 0)
    var = np.divide(
        np.maximum(total_sq - count * mean**2, 0.0),
        count - 1,
        out=np.zeros_like(total, dtype="float64"),
        where=count > 1,
    )
    std = np.where(withheld, 1.0, np.sqrt(var))  # withheld by every site: left unscaled (mean 0, std 1)
    return {S_MEAN: mean.tolist(), S_STD: std.tolist()}


def _column_sum(moments: list[dict], key: str) -> np.ndarray:
    """One moment summed over sites; a site's withheld (``None``, small-cell) feature adds nothing."""
    return np.sum([[0.0 if v is None else float(v) for v in m[key]] for m in moments], axis=0)


@dataclass(frozen=True)
class Scaler:
    """Standardisation ``(x - mean) / (std + eps)``; missing values become 0 (the mean)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        """Scaling from one matrix (FLamby's per-site or pooled scaling)."""
        stats = combine_moments([local_moments(x)], allow_unobserved=True)
        return cls.from_stats(stats)

    @classmethod
    def from_stats(cls, stats: dict[str, list[float]]) -> Scaler:
        return cls(mean=np.asarray(stats[S_MEAN], dtype="float64"), std=np.asarray(stats[S_STD], "float64"))

    def to_stats(self, names: list[str] | None = None) -> dict:
        out: dict = {S_MEAN: self.mean.tolist(), S_STD: self.std.tolist()}
        if names is not None:
            out[S_FEATURES] = list(names)
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"Scaler expects {self.mean.shape[0]} features but the data has {x.shape[1]}.")
        z = (x - self.mean) / (self.std + EPS)
        return np.nan_to_num(z, nan=0.0).astype("float32")
