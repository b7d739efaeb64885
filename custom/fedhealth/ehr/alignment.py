"""The server's side of the alignment: which features the model takes, from the sites' counts only.

The policy (part of the job) decides the feature set: ``union`` keeps a feature recorded at
``min_sites_with_feature`` sites or more, ``intersection`` only one that every site records; either
way a feature missing for more than ``max_missing_fraction`` of all patients goes, and a kept
feature that is missing anywhere gets a missingness indicator (``indicators``). Imputation values
(``mean``, or ``median`` from the merged histograms) and the scaling of every model column come from
the same counts and sums (:mod:`~fedhealth.ehr.profile`), so no second round trip is needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from fedhealth.ehr.dictionary import DataDictionary, Feature
from fedhealth.ehr.profile import DEFAULT_MIN_CELL, histogram_edges

MODES = ("union", "intersection")
IMPUTATIONS = ("mean", "median", "none")  # none: missing stays NaN, for trees that split on it
MISSING_SUFFIX = "_missing"


@dataclass(frozen=True)
class AlignmentPolicy:
    """How the server turns the sites' counts into the model's features (see the module docstring)."""

    mode: str = "union"
    min_sites_with_feature: int = 2
    max_missing_fraction: float = 0.9
    indicators: bool = True
    imputation: str = "mean"
    min_cell: int = DEFAULT_MIN_CELL

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}.")
        if self.imputation not in IMPUTATIONS:
            raise ValueError(f"imputation must be one of {IMPUTATIONS}, not {self.imputation!r}.")
        if not 0.0 <= self.max_missing_fraction <= 1.0:
            raise ValueError("max_missing_fraction must lie in [0, 1].")
        if self.min_sites_with_feature < 1 or self.min_cell < 1:
            raise ValueError("min_sites_with_feature and min_cell must be at least 1.")


def _int(value: object) -> int:
    """A released count, or 0 for a suppressed one (``None``)."""
    return int(value) if isinstance(value, int | float) else 0


def align(profiles: Mapping[str, dict], dictionary: DataDictionary, policy: AlignmentPolicy) -> dict:
    """The aligned schema (see SPEC: features, columns, mean, std, dropped, sites) from the sites' profiles.

    Raises:
        ValueError: no profile, a site profiled another dictionary, or no feature survives the policy.
    """
    if not profiles:
        raise ValueError("no site sent its profile; nothing to align")
    fingerprint = dictionary.fingerprint()
    other = sorted(s for s, p in profiles.items() if p.get("dictionary") != fingerprint)
    if other:
        raise ValueError(f"site(s) {other} profiled another data dictionary than the job's")
    rows = sum(int(p["rows"]) for p in profiles.values())
    kept, dropped = [], []
    for feature in dictionary.features:
        entries = [p["features"][feature.name] for p in profiles.values()]
        reason = _drop_reason(feature, entries, rows, len(profiles), policy)
        spec = None if reason else _feature_spec(feature, entries, rows, policy)
        if spec is None:
            dropped.append({"name": feature.name, "reason": reason or "no variation among released counts"})
        else:
            kept.append(spec)
    if not kept:
        raise ValueError("no feature of the dictionary survives the alignment policy")
    columns = [c for spec in kept for c in spec.pop("_columns")]
    return {
        "dictionary": fingerprint,
        "policy": asdict(policy),
        "rows": rows,
        "features": kept,
        "columns": [name for name, _, _ in columns],
        "mean": [m for _, m, _ in columns],
        "std": [s for _, _, s in columns],
        "dropped": dropped,
        "sites": {
            site: {
                "rows": int(p["rows"]),
                "features": {
                    n: {k: e.get(k) for k in ("present", "missing")} for n, e in p["features"].items()
                },
            }
            for site, p in sorted(profiles.items())
        },
    }


def _drop_reason(
    feature: Feature, entries: list[dict], rows: int, n_sites: int, policy: AlignmentPolicy
) -> str:
    with_feature = sum(1 for e in entries if _int(e["present"]) >= policy.min_cell)
    missing = rows - sum(_int(e["present"]) for e in entries)
    need = n_sites if policy.mode == "intersection" else policy.min_sites_with_feature
    if with_feature < need:
        rule = "mode intersection" if policy.mode == "intersection" else f"min_sites_with_feature {need}"
        return f"recorded at {with_feature} of {n_sites} sites ({rule})"
    if missing / rows > policy.max_missing_fraction:
        share, limit = missing / rows, policy.max_missing_fraction
        return f"missing for {share:.0%} of patients (max_missing_fraction {limit:g})"
    return ""


def _feature_spec(feature: Feature, entries: list[dict], rows: int, policy: AlignmentPolicy) -> dict | None:
    present = sum(_int(e["present"]) for e in entries)
    missing = rows - present
    indicator = policy.indicators and missing > 0
    columns: list[tuple[str, float, float]] = []
    spec: dict = {"name": feature.name, "kind": feature.kind, "indicator": indicator}
    if feature.kind == "categorical":
        totals = {c: sum(_int(e["categories"].get(c)) for e in entries) for c in feature.categories}
        categories = [c for c in feature.categories if totals[c] >= policy.min_cell]
        observed = sum(totals[c] for c in categories)
        if len(categories) < 2 or observed == 0:
            return None
        spec["categories"] = categories
        for category in categories[1:]:  # the first kept category is the reference level
            p = totals[category] / observed
            columns.append((f"{feature.name}={category}", p, _binary_sd(p)))
    else:
        released = [e for e in entries if e.get("sum") is not None]
        n = sum(_int(e["present"]) for e in released)
        if n < 2:
            return None
        total = sum(float(e["sum"]) for e in released)
        total_sq = sum(float(e["sumsq"]) for e in released)
        mean = total / n
        sd = math.sqrt(max(total_sq - n * mean**2, 0.0) / (n - 1))
        if sd == 0.0:
            return None
        impute: float | None = mean
        if policy.imputation == "none":
            impute = None
        elif policy.imputation == "median" and feature.kind == "numeric":
            impute = _median(feature, entries, default=mean)
        spec["impute"] = impute
        columns.append((feature.name, mean, sd))
    if indicator:
        p = missing / rows
        columns.append((feature.name + MISSING_SUFFIX, p, _binary_sd(p)))
    spec["columns"] = [name for name, _, _ in columns]
    spec["_columns"] = columns
    return spec


def _binary_sd(p: float) -> float:
    sd = math.sqrt(p * (1.0 - p))
    return sd if sd > 0 else 1.0


def _median(feature: Feature, entries: list[dict], *, default: float) -> float:
    """The median from the merged histograms, linear within its bin (suppressed cells count as 0)."""
    edges = histogram_edges(feature)
    hists = [e["histogram"] for e in entries if e.get("histogram") is not None]
    if edges is None or not hists:
        return default
    counts = np.sum([[_int(c) for c in h] for h in hists], axis=0).astype("float64")
    if counts.sum() == 0:
        return default
    cumulative = np.cumsum(counts)
    half = counts.sum() / 2.0
    i = int(np.searchsorted(cumulative, half))
    before = cumulative[i - 1] if i > 0 else 0.0
    fraction = (half - before) / counts[i] if counts[i] > 0 else 0.5
    return float(edges[i] + fraction * (edges[i + 1] - edges[i]))
