"""The one-patient inversion of issue 15, finding 4, shared by the tests: a re-export of the core in
:mod:`fedhealth_tools.privacy.attacks.tabular_inversion` (``x = ΔW / Δb`` for the logistic model)."""

from fedhealth_tools.privacy.attacks.tabular_inversion import (
    BIAS,
    MATCH_TOLERANCE,
    WEIGHT,
    Match,
    invert,
    nearest_row,
    site_rows,
    tabular_site_rows,
)

__all__ = [
    "BIAS",
    "MATCH_TOLERANCE",
    "WEIGHT",
    "Match",
    "invert",
    "nearest_row",
    "site_rows",
    "tabular_site_rows",
]
