"""The XGBoost parameters a job may set for a site's trees, checked at the site.

A job is code-equivalent: what it names runs at a hospital. XGBoost's parameter space is large (thread
counts, GPU devices, custom objectives by name, plugins through the communicator); a site accepts only
the tree-shape and regularisation parameters below, each within a range, and always trains on one
thread per job (the site's CPU is shared with its clinical systems).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# name -> (type, low, high) for numbers; name -> allowed values for strings
NUMERIC: dict[str, tuple[type, float, float]] = {
    "eta": (float, 1e-4, 1.0),
    "max_depth": (int, 1, 12),
    "min_child_weight": (float, 0.0, 1e4),
    "subsample": (float, 0.05, 1.0),
    "colsample_bytree": (float, 0.05, 1.0),
    "lambda": (float, 0.0, 1e4),
    "alpha": (float, 0.0, 1e4),
    "gamma": (float, 0.0, 1e4),
    "max_bin": (int, 2, 1024),
    "base_score": (float, 1e-6, 1 - 1e-6),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "objective": ("binary:logistic",),
    "tree_method": ("hist",),
    "eval_metric": ("auc", "logloss"),
}
ALIASES = {"learning_rate": "eta", "reg_lambda": "lambda", "reg_alpha": "alpha"}
DEFAULTS = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "eta": 0.3,
    "max_depth": 3,
    "base_score": 0.5,
}


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The job's parameters, defaults filled in, ``nthread`` 1; or ``ValueError`` naming each problem."""
    problems: list[str] = []
    out: dict[str, Any] = dict(DEFAULTS)
    for key, value in params.items():
        name = ALIASES.get(key, key)
        if name in CHOICES:
            if value not in CHOICES[name]:
                problems.append(f"{key} must be one of {list(CHOICES[name])}")
                continue
        elif name in NUMERIC:
            kind, low, high = NUMERIC[name]
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if kind is int:
                ok = ok and float(value).is_integer()
            if not ok or not low <= float(value) <= high:
                problems.append(
                    f"{key} must be {'a whole number' if kind is int else 'a number'} in [{low:g}, {high:g}]"
                )
                continue
            value = kind(value)
        else:
            problems.append(
                f"{key} is not a parameter a site accepts (allowed: {sorted(NUMERIC) + sorted(CHOICES)})"
            )
            continue
        out[name] = value
    if problems:
        raise ValueError("XGBoost parameters refused: " + "; ".join(problems) + ".")
    out["nthread"] = 1
    return out
