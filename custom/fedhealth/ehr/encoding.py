"""Canonical features -> the model's input matrix under the aligned schema.

Per kept feature: a numeric or binary value (missing -> the federation's imputation value), or one
column per non-reference category (missing, or a category too rare to be kept -> the category's
federation-wide share, not the reference level); then the missingness indicator where the schema has
one. Every column is standardised with the federation's
mean and standard deviation, so a mean-imputed value becomes 0.

A schema aligned with imputation ``none`` (tree jobs: XGBoost learns a default direction for a missing
value at every split) keeps every missing value, and every one-hot column of a missing or dropped
category, as NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EPS = 1e-9


def encode(features: pd.DataFrame, schema: dict) -> np.ndarray:
    """The ``(rows, len(schema["columns"]))`` float32 matrix of ``features`` under ``schema``.

    Raises:
        ValueError: ``features`` lacks a feature the schema keeps.
    """
    parts = []
    native = schema.get("policy", {}).get("imputation") == "none"
    means = dict(zip(schema["columns"], schema["mean"], strict=True))
    for spec in schema["features"]:
        name = spec["name"]
        if name not in features.columns:
            raise ValueError(f"the table has no feature {name!r}, which the aligned schema keeps")
        column = features[name]
        missing = column.isna().to_numpy()
        if spec["kind"] == "categorical":  # a category the federation did not keep counts as missing
            missing = missing | ~column.isin(spec["categories"]).to_numpy()
            for category in spec["categories"][1:]:
                key = f"{name}={category}"
                values = (column == category).to_numpy(dtype="float64")
                values[missing] = np.nan if native else means[key]
                parts.append(values)
        else:
            values = column.to_numpy(dtype="float64").copy()
            values[missing] = np.nan if spec.get("impute") is None else float(spec["impute"])
            parts.append(values)
        if spec["indicator"]:
            parts.append(missing.astype("float64"))
    x = np.stack(parts, axis=1) if parts else np.zeros((len(features), 0))
    if x.shape[1] != len(schema["columns"]):
        raise ValueError(f"encoded {x.shape[1]} columns but the schema has {len(schema['columns'])}")
    mean = np.asarray(schema["mean"], dtype="float64")
    std = np.asarray(schema["std"], dtype="float64")
    return ((x - mean) / (std + EPS)).astype("float32")
