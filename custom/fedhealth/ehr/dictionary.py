"""The job's data dictionary: what each feature means, in which unit and with which categories.

A dictionary is data the job carries (``task_args["dictionary"]``), the same at every site and at
the server. It names features, never columns of a hospital's file: how a hospital's export maps onto
it is the site's own :mod:`~fedhealth.ehr.mapping`. Format (JSON)::

    {"name": "heart_disease", "version": 1,
     "target": {"name": "heart_disease", "description": "..."},
     "features": [
       {"name": "age", "kind": "numeric", "unit": "year", "range": [18, 100]},
       {"name": "sex", "kind": "binary", "description": "1 = male"},
       {"name": "cp", "kind": "categorical", "categories": ["typical_angina", "..."],
        "codes": {"typical_angina": ["1"]}},
       {"name": "chol", "kind": "numeric", "unit": "mg/dL", "range": [80, 700],
        "molar_mass": "386.65 g/mol", "required": false}]}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("numeric", "binary", "categorical")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_FEATURE_KEYS = {
    "name",
    "kind",
    "unit",
    "range",
    "categories",
    "codes",
    "molar_mass",
    "required",
    "description",
}


@dataclass(frozen=True)
class Feature:
    """One feature of the dictionary.

    Args:
        name: the feature's name (letters, digits, ``_``).
        kind: ``numeric``, ``binary`` (canonical values 0 and 1) or ``categorical``.
        unit: the canonical unit (a ``pint`` unit string) of a numeric feature, or ``None``.
        range: plausible ``(low, high)`` in the canonical unit; a value outside is set missing and counted.
        categories: the canonical categories of a categorical feature (the first is the reference level).
        codes: ``{category: codes}`` that also mean that category (ICD-10, LOINC or local codes).
        molar_mass: e.g. ``"386.65 g/mol"``: lets a site's mmol/L convert to a canonical mg/dL.
        required: a site whose table lacks the feature declines the job.
    """

    name: str
    kind: str
    unit: str | None = None
    range: tuple[float, float] | None = None
    categories: tuple[str, ...] = ()
    codes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    molar_mass: str | None = None
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class DataDictionary:
    """The features and the binary target of a tabular task."""

    name: str
    features: tuple[Feature, ...]
    target: str
    version: int = 1
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def fingerprint(self) -> str:
        """SHA-256 of the dictionary's canonical JSON: sites and server check they use the same one."""
        canonical = json.dumps(self.source, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataDictionary:
        """Parse and check a dictionary; every error names the feature and the key.

        Raises:
            ValueError: a missing or malformed key, an unknown kind, a duplicate name, a range whose
                low end is not below its high end, a code listed under two categories.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"the data dictionary must be a JSON object, not a {type(data).__name__}")
        name = _require_str(data, "name", "the data dictionary")
        target = data.get("target")
        if not isinstance(target, Mapping) or not isinstance(target.get("name"), str):
            raise ValueError("the data dictionary needs a 'target' object with a 'name'")
        raw = data.get("features")
        if not isinstance(raw, list) or not raw:
            raise ValueError("the data dictionary needs a non-empty 'features' list")
        features = tuple(_feature(i, f) for i, f in enumerate(raw))
        seen: set[str] = set()
        for f in features:
            if f.name in seen:
                raise ValueError(f"data dictionary: feature {f.name!r} is defined twice")
            seen.add(f.name)
        if target["name"] in seen:
            raise ValueError(f"data dictionary: the target {target['name']!r} is also a feature")
        version = data.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError("data dictionary: 'version' must be a whole number")
        return cls(name=name, features=features, target=target["name"], version=version, source=dict(data))


def _require_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {key!r} must be a non-empty string")
    return value


def _feature(index: int, data: Any) -> Feature:
    where = f"data dictionary, feature {index + 1}"
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must be a JSON object")
    name = _require_str(data, "name", where)
    where = f"data dictionary, feature {name!r}"
    if not _NAME.match(name):
        raise ValueError(f"{where}: a name is a letter then letters, digits or '_' (at most 64)")
    unknown = sorted(set(data) - _FEATURE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; a feature takes {sorted(_FEATURE_KEYS)}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}: 'kind' must be one of {KINDS}, not {kind!r}")
    low_high = data.get("range")
    if low_high is not None:
        ok = isinstance(low_high, list) and len(low_high) == 2
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in low_high)
        if not ok or low_high[0] >= low_high[1]:
            raise ValueError(f"{where}: 'range' must be [low, high] with low < high")
        if kind != "numeric":
            raise ValueError(f"{where}: only a numeric feature has a 'range'")
    categories = tuple(data.get("categories") or ())
    codes = {str(k): tuple(str(c) for c in v) for k, v in (data.get("codes") or {}).items()}
    if kind == "categorical":
        if len(categories) < 2 or len(set(categories)) != len(categories):
            raise ValueError(f"{where}: a categorical feature needs at least two distinct 'categories'")
        stray = sorted(set(codes) - set(categories))
        if stray:
            raise ValueError(f"{where}: 'codes' names categories it does not define: {stray}")
        owner: dict[str, str] = {}
        for category, listed in codes.items():
            for code in listed:
                if owner.setdefault(code, category) != category:
                    raise ValueError(f"{where}: code {code!r} is listed under two categories")
    elif categories or codes:
        raise ValueError(f"{where}: only a categorical feature has 'categories' or 'codes'")
    unit = data.get("unit")
    if unit is not None and (kind != "numeric" or not isinstance(unit, str)):
        raise ValueError(f"{where}: only a numeric feature has a 'unit' (a string such as 'mg/dL')")
    return Feature(
        name=name,
        kind=kind,
        unit=unit,
        range=tuple(float(v) for v in low_high) if low_high is not None else None,  # type: ignore[arg-type]
        categories=categories,
        codes=codes,
        molar_mass=data.get("molar_mass"),
        required=bool(data.get("required", False)),
        description=str(data.get("description", "")),
    )
