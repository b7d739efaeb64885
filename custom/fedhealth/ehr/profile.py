"""What a site tells the server before training: counts and sums, every small clinical cell suppressed.

Released as they are: the number of training rows and, per feature, how many values are present and
missing (operational counts: that a measurement was not taken says nothing clinical about a patient,
and with the row count released one would give the other away). Suppressed: a category count or
histogram cell ``c`` with ``0 < c < min_cell`` is sent as ``None``; when exactly one cell of a
feature is suppressed, the smallest released positive cell goes too (secondary suppression: else
``present`` minus the others would give it back). A numeric feature's sum and sum of squares, and
its histogram (:data:`HISTOGRAM_BINS` equal bins over the dictionary's plausible range), are sent
only when at least ``min_cell`` values are present. Nothing else about the table leaves the site.
The suppression rule itself is :mod:`fedhealth.privacy.small_cells` (re-exported here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedhealth.ehr.dictionary import DataDictionary, Feature
from fedhealth.privacy.small_cells import DEFAULT_MIN_CELL, suppress, suppress_cells  # the one implementation

HISTOGRAM_BINS = 20
__all__ = [
    "DEFAULT_MIN_CELL",
    "HISTOGRAM_BINS",
    "check_profile",
    "histogram_edges",
    "site_profile",
    "suppress",
    "suppress_cells",
]


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
        entry: dict = {"present": present, "missing": rows - present}
        if feature.kind == "categorical":
            counts = column.value_counts()
            cells = suppress_cells([int(counts.get(c, 0)) for c in feature.categories], min_cell)
            entry["categories"] = dict(zip(feature.categories, cells, strict=True))
        else:
            values = column.dropna().to_numpy(dtype="float64")
            released = present >= min_cell
            entry["sum"] = float(values.sum()) if released else None
            entry["sumsq"] = float((values**2).sum()) if released else None
            edges = histogram_edges(feature) if feature.kind == "numeric" else None
            if edges is not None:
                counts, _ = np.histogram(values, bins=edges) if released else (np.zeros(HISTOGRAM_BINS), None)
                entry["histogram"] = suppress_cells([int(c) for c in counts], min_cell) if released else None
        out[feature.name] = entry
    return {
        "dictionary": dictionary.fingerprint(),
        "rows": rows,
        "min_cell": min_cell,
        "features": out,
        "problems": {k: suppress(v, min_cell) for k, v in sorted((problems or {}).items())},
    }


_PROFILE_KEYS = {"dictionary", "rows", "min_cell", "features", "problems"}
_ENTRY_KEYS = {"present", "missing", "sum", "sumsq", "histogram", "categories"}


def check_profile(profile: object, dictionary: DataDictionary) -> dict:
    """The server's check of a received profile: only the keys above, counts or ``None``, no small cell.

    Raises:
        ValueError: an unexpected key or feature, a value that is not a number, or a released count
            below the profile's own ``min_cell`` (what leaves a site is checked, not trusted).
    """
    if not isinstance(profile, dict) or set(profile) != _PROFILE_KEYS:
        raise ValueError(f"a profile has exactly the keys {sorted(_PROFILE_KEYS)}")
    min_cell, rows = profile["min_cell"], profile["rows"]
    if not isinstance(min_cell, int) or not isinstance(rows, int) or rows < min_cell:
        raise ValueError("'rows' and 'min_cell' must be whole numbers with rows >= min_cell")
    if set(profile["features"]) != set(dictionary.names):
        raise ValueError("the profile's features are not the dictionary's")

    def count(value: object, *, cell: bool = True) -> None:
        if value is None and cell:
            return
        whole = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        if not whole or (cell and 0 < value < min_cell):  # type: ignore[operator]
            raise ValueError(
                "a count is not a whole number or is a small cell that should have been suppressed"
            )

    def table(cells: list) -> None:
        for value in cells:
            count(value)
        if cells.count(None) == 1:
            raise ValueError("a table has exactly one suppressed cell: the others and the total give it away")

    for name, entry in profile["features"].items():
        if not isinstance(entry, dict) or not set(entry) <= _ENTRY_KEYS:
            raise ValueError(f"feature {name!r}: unexpected keys")
        count(entry.get("present"), cell=False)
        count(entry.get("missing"), cell=False)
        if entry["present"] + entry["missing"] != rows:
            raise ValueError(f"feature {name!r}: present and missing do not add up to the rows")
        table(list((entry.get("categories") or {}).values()))
        table(list(entry.get("histogram") or []))
        for key in ("sum", "sumsq"):
            if entry.get(key) is not None and not isinstance(entry[key], int | float):
                raise ValueError(f"feature {name!r}: {key!r} is not a number")
    for value in profile["problems"].values():
        count(value)
    return profile
