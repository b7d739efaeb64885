"""Combining per-site metrics into federation-level figures (sample-weighted means)."""

from __future__ import annotations

from collections.abc import Mapping

from fedhealth.constants import M_N_TEST

# What the report's "global" AUC is: each site's AUC weighted by its test size; a pooled AUC would
# need every site's scores in one place.
AUC_LABEL = "size-weighted mean of site AUCs"


def weighted_mean(values: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """Mean of the sites' values weighted by ``weights``; sites with no value are left out."""
    pairs = [(v, weights.get(site, 0.0)) for site, v in values.items() if v is not None]
    total = sum(w for _, w in pairs)
    if not pairs or total <= 0:
        return None
    return sum(v * w for v, w in pairs) / total


def round_summary(sites: Mapping[str, Mapping[str, float]]) -> dict[str, float | None]:
    """Global accuracy and AUC of the model the sites received this round, over all test patients.

    Accuracy is weighted by each site's test size, so it equals the accuracy over the union of the
    reporting sites' test sets. The weighted AUC is a summary, not the pooled AUC.
    """
    weights = {site: float(m.get(M_N_TEST, 0.0)) for site, m in sites.items()}
    return {
        "global_accuracy": weighted_mean({s: m.get("global_accuracy") for s, m in sites.items()}, weights),
        "global_auc": weighted_mean({s: m.get("global_auc") for s, m in sites.items()}, weights),
    }
