"""Weighted model averaging (FedAvg, McMahan et al. 2017), FLARE-free.

FLARE's ``InTimeAccumulateWeightedAggregator`` does the same on the server, weighting each site's
update by the ``NUM_STEPS_CURRENT_ROUND`` it reports; fedhealth's executor reports the site's number
of training samples there, so both weight by sample count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def weighted_average(
    updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]
) -> dict[str, np.ndarray]:
    """Average several sites' weights, each counted in proportion to its weight.

    Raises:
        ValueError: on no updates, mismatched lengths, non-positive total weight or differing keys.
    """
    if not updates:
        raise ValueError("weighted_average needs at least one update.")
    if len(updates) != len(weights):
        raise ValueError(f"Got {len(updates)} updates but {len(weights)} weights.")
    w = np.asarray(weights, dtype="float64")
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("Weights must be non-negative with a positive sum.")
    keys = set(updates[0])
    for update in updates[1:]:
        if set(update) != keys:
            raise ValueError("All updates must carry the same parameter names.")
    w = w / w.sum()
    return {
        k: sum(wi * np.asarray(u[k], dtype="float64") for wi, u in zip(w, updates, strict=True)) for k in keys
    }
