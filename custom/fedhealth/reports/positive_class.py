"""Which class the report's sensitivity and specificity count as positive.

Binary labels treat 1 as positive, but in some public sets 0 is the disease; a sensitivity without
its positive class can silently be the recall of the healthy class. Sites name the positive class
in their validate results (``positive_class``); results from sites that do not (older sites, the
heart task) fall back to the label value 1; a multi-label job's overall view counts "any finding" as
positive (each finding in its per-finding table; a multi-class job: any class but the first).
"""

from __future__ import annotations

from collections.abc import Mapping

from fedhealth.constants import M_PER_FINDING, M_POSITIVE_CLASS

LABEL_ONE = "1 (label value)"
# The overall view of a multi-label job ("any finding") or a multi-class one (any class but the first).
ANY_FINDING = "any finding"


def _name(value: object) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("name")
    return str(value) if value not in (None, "") else None


def positive_class(cross: Mapping[str, Mapping], model: str | None) -> dict:
    """The positive class the validating sites stated for ``model``.

    Returns:
        ``{"name", "stated", "sites", "note"}``: ``name`` is what the report prints next to
        sensitivity; ``stated`` whether any site named it; ``sites`` site -> the name it stated
        (None: not stated); ``note`` says when sites disagree or some did not state it.
    """
    results = {site: models[model] for site, models in cross.items() if model is not None and model in models}
    stated = {site: _name(r.get(M_POSITIVE_CLASS)) for site, r in results.items()}
    names = sorted({n for n in stated.values() if n is not None})
    silent = sorted(site for site, n in stated.items() if n is None)
    note = None
    if not names:
        multi = any(M_PER_FINDING in r for r in results.values())
        return {"name": ANY_FINDING if multi else LABEL_ONE, "stated": False, "sites": stated, "note": None}
    if len(names) > 1:
        name = " / ".join(names)
        note = "the sites name different positive classes: " + "; ".join(
            f"{site}: {n or LABEL_ONE}" for site, n in sorted(stated.items())
        )
        note += "; their sensitivities do not count the same class and cannot be compared"
    else:
        name = names[0]
    if silent:
        extra = f"{', '.join(silent)} did not state a positive class (label value 1 assumed there)"
        note = f"{note}; {extra}" if note else extra
    return {"name": name, "stated": True, "sites": stated, "note": note}


def sensitivity_label(positive: Mapping | None) -> str:
    """``sensitivity (positive class: X)``, the heading the report uses."""
    return f"sensitivity (positive class: {(positive or {}).get('name') or LABEL_ONE})"
