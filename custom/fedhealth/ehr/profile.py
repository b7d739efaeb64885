"""What a site tells the server before training: counts and sums, each small cell suppressed.

A count ``c`` with ``0 < c < min_cell`` is sent as ``None`` (suppressed); a numeric feature's sum and
sum of squares only when at least ``min_cell`` values are present; a numeric histogram has
:data:`HISTOGRAM_BINS` equal bins over the dictionary's plausible range, each cell suppressed alike.
Nothing else about the table leaves the site.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedhealth.ehr.dictionary import DataDictionary, Feature

HISTOGRAM_BINS = 20
DEFAULT_MIN_CELL = 5


def suppress(count: int, min_cell: int) -> int | None:
    """``count`` itself, or ``None`` when it is a small cell (``0 < count < min_cell``)."""
    return None if 0 < count < min_cell else int(count)


def histogram_edges(feature: Feature) -> np.ndarray | None:
    """Bin edges of a numeric feature's histogram (``None`` without a plausible range)."""
    if feature.range is None:
        return None
    return np.linspace(feature.range[0], feature.range[1], HISTOGRAM_BINS + 1)


def site_profile(
    features: pd.DataFrame,
    dictionary: DataDictionary,
    *,
    min_cell: int,
    problems: dict[str, int] | None = None,
) -> dict:
    """The site's profile of its training table (canonical features from :mod:`~fedhealth.ehr.harmonize`).

    Args:
        features: the harmonized training features.
        dictionary: the job's dictionary.
        min_cell: the smallest count the site releases (the larger of the job's and its own).
        problems: ``{problem kind: count}`` from the site's data report (suppressed the same way).

    Raises:
        ValueError: fewer rows than ``min_cell`` (the site releases nothing about so few patients).
    """
    rows = len(features)
    if rows < min_cell:
        raise ValueError(
            f"this site has {rows} training row(s), fewer than the smallest cell it may release ({min_cell})"
        )
    out = {}
    for feature in dictionary.features:
        column = features[feature.name]
        present = int(column.notna().sum())
        entry: dict = {"present": suppress(present, min_cell), "missing": suppress(rows - present, min_cell)}
        if feature.kind == "categorical":
            counts = column.value_counts()
            entry["categories"] = {c: suppress(int(counts.get(c, 0)), min_cell) for c in feature.categories}
        else:
            values = column.dropna().to_numpy(dtype="float64")
            released = present >= min_cell
            entry["sum"] = float(values.sum()) if released else None
            entry["sumsq"] = float((values**2).sum()) if released else None
            edges = histogram_edges(feature) if feature.kind == "numeric" else None
            if edges is not None:
                counts, _ = np.histogram(values, bins=edges) if released else (np.zeros(HISTOGRAM_BINS), None)
                entry["histogram"] = [suppress(int(c), min_cell) if released else None for c in counts]
        out[feature.name] = entry
    return {
        "dictionary": dictionary.fingerprint(),
        "rows": rows,
        "min_cell": min_cell,
        "features": out,
        "problems": {k: suppress(v, min_cell) for k, v in sorted((problems or {}).items())},
    }
