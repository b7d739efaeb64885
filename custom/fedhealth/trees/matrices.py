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
        ValueError: the site has no aligned schema, or its matrix width differs from the schema's
            columns (the message names the site).
    """
    schema = getattr(site, "schema", None)
    if not isinstance(schema, dict):
        raise ValueError(
            f"site {site.name}: tree jobs train on an aligned tabular task, and this site has no schema "
            "(did it take part in the alignment workflow?)"
        )
    columns = list(schema["columns"])
    train, test = site.arrays("train"), site.arrays("test")
    for split, (x, _) in (("train", train), ("test", test)):
        if x.ndim != 2 or x.shape[1] != len(columns):
            raise ValueError(
                f"site {site.name}: its {split} matrix has {x.shape[-1]} feature columns but the aligned "
                f"schema has {len(columns)}"
            )
    return train, test, xgboost_names(columns)
