"""Scoring for the missing-data benchmark (``make bench-ehr``): who can be scored, AUCs and the aims.

A complete-case model cannot score a patient with a missing value among its features, so every
method is scored on the patients it can score and the count is reported (:func:`complete_case_mask`).
AUCs are per hospital; the client average is the mean over hospitals whose scored patients hold both
classes (a hospital with one class has no AUC and is named, not counted as 0 or 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fedhealth.training.metrics import auc


def complete_case_mask(features: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """True for each row with a value in every one of ``columns`` (a complete-case model can score it).

    Raises:
        ValueError: no column given, or a column the table lacks.
    """
    if not columns:
        raise ValueError("a complete-case mask needs at least one feature column.")
    absent = [c for c in columns if c not in features.columns]
    if absent:
        raise ValueError(f"the table has no column(s) {absent}; it has {list(features.columns)}")
    return features[list(columns)].notna().all(axis=1).to_numpy()


def subset_auc(labels: np.ndarray, probs: np.ndarray, mask: np.ndarray) -> float | None:
    """ROC AUC over the rows in ``mask``; ``None`` when they do not hold both classes.

    Raises:
        ValueError: arrays of different lengths.
    """
    labels, probs, mask = np.asarray(labels), np.asarray(probs), np.asarray(mask, dtype=bool)
    if not len(labels) == len(probs) == len(mask):
        raise ValueError(
            f"labels ({len(labels)}), probs ({len(probs)}) and mask ({len(mask)}) differ in length."
        )
    value = auc(labels[mask], probs[mask]) if mask.any() else math.nan
    return None if math.isnan(value) else value


def client_average(per_site: Mapping[str, float | None]) -> float | None:
    """Mean over the hospitals with an AUC (``None`` when none has one)."""
    values = [v for v in per_site.values() if v is not None]
    return float(np.mean(values)) if values else None


def summarize(runs: Sequence[Mapping[str, float | None]], sites: Sequence[str]) -> dict:
    """Per-seed per-site AUCs -> mean and sd over seeds of the client average, and per-site means.

    Args:
        runs: one ``{site: auc or None}`` per seed.
        sites: the hospitals, in report order.

    Returns:
        ``client_avg_auc``, ``client_avg_auc_sd`` (sample sd over seeds; 0 for one seed),
        ``per_site_auc`` (``None`` for a hospital without an AUC), ``client_avg_auc_per_seed``
        and ``sites_without_auc``.

    Raises:
        ValueError: no run.
    """
    if not runs:
        raise ValueError("nothing to summarize: no seed was run.")
    client = [client_average({s: r.get(s) for s in sites}) for r in runs]
    defined = [c for c in client if c is not None]
    per_site = {}
    for site in sites:
        values = [r[site] for r in runs if r.get(site) is not None]
        per_site[site] = float(np.mean(values)) if values else None
    return {
        "client_avg_auc": float(np.mean(defined)) if defined else None,
        "client_avg_auc_sd": float(np.std(defined, ddof=1)) if len(defined) > 1 else 0.0,
        "per_site_auc": per_site,
        "client_avg_auc_per_seed": client,
        "sites_without_auc": [s for s in sites if per_site[s] is None],
    }


def aim_gain(
    new: Mapping[str, float | None], old: Mapping[str, float | None], *, margin: float, tolerance: float
) -> dict:
    """Is ``new`` ``margin`` above ``old`` on the client average, no hospital worse by > ``tolerance``?

    Both maps are ``{site: auc}`` on the same patients; a hospital without an AUC in either is left
    out of both checks and named.
    """
    sites = [s for s in new if new.get(s) is not None and old.get(s) is not None]
    gain = float(np.mean([new[s] - old[s] for s in sites])) if sites else None  # type: ignore[operator]
    per_site = {s: float(new[s] - old[s]) for s in sites}  # type: ignore[operator]
    worst = min(per_site, key=per_site.get) if per_site else None  # type: ignore[arg-type]
    return {
        "client_avg_gain": gain,
        "client_avg_met": gain is not None and gain >= margin,
        "per_site_gain": per_site,
        "worst_site": worst,
        "no_site_worse_met": bool(per_site) and min(per_site.values()) >= -tolerance,
        "sites_left_out": sorted(set(new) - set(sites)),
    }


def aim_close(federated: float | None, pooled: float | None, *, tolerance: float) -> dict:
    """Is the federated client average within ``tolerance`` below pooled (or above it)?"""
    if federated is None or pooled is None:
        return {"gap": None, "met": False}
    gap = float(pooled - federated)
    return {"gap": gap, "met": gap <= tolerance}
