"""A tabular site's matrices for XGBoost, checked against the aligned schema (FLARE-free)."""

from __future__ import annotations

import numpy as np

from fedhealth.tasks.base import Site
from fedhealth.trees.model import xgboost_names

Split = tuple[np.ndarray, np.ndarray]


def site_matrices(site: Site) -> tuple[Split, Split, list[str] | None]:
    """``(train, test, feature names)`` of a site whose task aligned a schema (``tabular``).

    The names are the schema's columns (kept in the exported model) when XGBoost accepts them all.

    Raises:
        ValueError: the site has no aligned schema (the message names the site).
    """
    schema = getattr(site, "schema", None)
    if not isinstance(schema, dict):
        raise ValueError(
            f"site {site.name}: tree jobs train on an aligned tabular task, and this site has no schema "
            "(did it take part in the alignment workflow?)"
        )
    # the site's arrays are encoded under that schema (fedhealth.ehr.encoding checks their width)
    return site.arrays("train"), site.arrays("test"), xgboost_names(list(schema["columns"]))
