"""A site's own mapping of its export onto the job's data dictionary (site-local, never in a job).

``<data_root>/<dataset>/mapping.json``::

    {"id_column": "patient_id",
     "missing_tokens": ["?", "", "NA", "-9"],
     "target": {"column": "num", "positive": ["1", "2", "3", "4"], "negative": ["0"]},
     "columns": {"age": "age",
                 "chol_mmol": {"feature": "chol", "unit": "mmol/L", "missing_values": ["0"]},
                 "chest_pain": {"feature": "cp", "recode": {"typical angina": "typical_angina"}},
                 "remarks": null}}

A column not listed maps to the dictionary feature of the same name, else it is ignored and listed.
Units convert with ``pint``; a molar mass in the dictionary lets mmol/L become mg/dL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pint

from fedhealth.data.messages import SiteDataError
from fedhealth.ehr.dictionary import DataDictionary, Feature

MAPPING_FILE = "mapping.json"
DEFAULT_MISSING_TOKENS = ("", "NA", "NaN", "nan")
_COLUMN_KEYS = {"feature", "unit", "recode", "missing_values"}


@dataclass(frozen=True)
class ColumnMap:
    """How one local column becomes one dictionary feature."""

    column: str
    feature: str
    unit: str | None = None
    recode: Mapping[str, Any] = field(default_factory=dict)
    missing_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetMap:
    column: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]


@dataclass(frozen=True)
class SiteMapping:
    """A site's mapping: its columns, target, missing tokens and optional id column and file names."""

    columns: Mapping[str, ColumnMap | None]
    target: TargetMap
    missing_tokens: tuple[str, ...] = DEFAULT_MISSING_TOKENS
    id_column: str | None = None
    train: str = "train.csv"
    test: str = "test.csv"

    @classmethod
    def from_dict(cls, data: Any, *, label: str = MAPPING_FILE) -> SiteMapping:
        """Parse and check a mapping; errors name the key and ``label`` (the site's file), never a value.

        Raises:
            SiteDataError: malformed JSON structure.
        """
        if not isinstance(data, Mapping):
            raise SiteDataError(f"{label}: must hold a JSON object")
        unknown = sorted(set(data) - {"id_column", "missing_tokens", "target", "columns", "train", "test"})
        if unknown:
            raise SiteDataError(f"{label}: unknown key(s) {unknown}")
        target = data.get("target")
        if not isinstance(target, Mapping) or not isinstance(target.get("column"), str):
            raise SiteDataError(f"{label}: 'target' must be an object with 'column', 'positive', 'negative'")
        positive, negative = _strings(target.get("positive"), label), _strings(target.get("negative"), label)
        if not positive or not negative or set(positive) & set(negative):
            raise SiteDataError(f"{label}: target 'positive' and 'negative' must be non-empty and disjoint")
        raw_columns = data.get("columns", {})
        if not isinstance(raw_columns, Mapping):
            raise SiteDataError(f"{label}: 'columns' must be an object {{local column: feature}}")
        columns = {str(col): _column(str(col), spec, label) for col, spec in raw_columns.items()}
        tokens = data.get("missing_tokens")
        for key in ("id_column", "train", "test"):
            if data.get(key) is not None and not isinstance(data.get(key), str):
                raise SiteDataError(f"{label}: {key!r} must be a string")
        for key in ("train", "test"):
            name = data.get(key)
            if name is not None and (Path(name).name != name or name.startswith(".")):
                raise SiteDataError(f"{label}: {key!r} must be a file name in the dataset folder")
        return cls(
            columns=columns,
            target=TargetMap(target["column"], positive, negative),
            missing_tokens=_strings(tokens, label) if tokens is not None else DEFAULT_MISSING_TOKENS,
            id_column=data.get("id_column"),
            train=data.get("train") or "train.csv",
            test=data.get("test") or "test.csv",
        )

    @classmethod
    def load(cls, folder: Path, *, label: str) -> SiteMapping:
        path = Path(folder) / MAPPING_FILE
        if not path.is_file():
            raise SiteDataError(f"{label}: no {MAPPING_FILE} (the site's mapping of its table) at this site")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SiteDataError(
                f"{label}/{MAPPING_FILE} is not valid UTF-8 JSON: {type(exc).__name__}"
            ) from exc
        return cls.from_dict(data, label=f"{label}/{MAPPING_FILE}")

    def resolve(
        self, header: list[str], dictionary: DataDictionary
    ) -> tuple[dict[str, ColumnMap], list[str]]:
        """``({feature: ColumnMap}, ignored columns)`` for a file with ``header``.

        Raises:
            SiteDataError: the mapping names a column the file lacks, two columns map to one feature,
                a column maps to a feature the dictionary lacks, or the target column is absent.
        """
        names = set(dictionary.names)
        used: dict[str, ColumnMap] = {}
        ignored = []
        absent = sorted(c for c, m in self.columns.items() if m is not None and c not in header)
        if absent:
            raise SiteDataError(f"the mapping names column(s) {absent} that the file lacks")
        if self.target.column not in header:
            raise SiteDataError(f"the target column {self.target.column!r} is missing")
        for column in header:
            if column in (self.target.column, self.id_column):
                continue
            if column in self.columns:
                spec = self.columns[column]
            else:
                spec = ColumnMap(column, column) if column in names else None
            if spec is None:
                ignored.append(column)
                continue
            if spec.feature not in names:
                raise SiteDataError(f"column {column!r} maps to {spec.feature!r}, which the dictionary lacks")
            if spec.feature in used:
                raise SiteDataError(
                    f"columns {used[spec.feature].column!r} and {column!r} both map to "
                    f"feature {spec.feature!r}"
                )
            used[spec.feature] = spec
        return used, ignored


def _strings(value: Any, label: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SiteDataError(f"{label}: expected a list of strings")
    return tuple(str(v) for v in value)


def _column(column: str, spec: Any, label: str) -> ColumnMap | None:
    if spec is None:
        return None
    if isinstance(spec, str):
        return ColumnMap(column, spec)
    if not isinstance(spec, Mapping) or not isinstance(spec.get("feature"), str):
        raise SiteDataError(f"{label}, column {column!r}: a feature name, null, or an object with 'feature'")
    unknown = sorted(set(spec) - _COLUMN_KEYS)
    if unknown:
        raise SiteDataError(f"{label}, column {column!r}: unknown key(s) {unknown}")
    recode = spec.get("recode") or {}
    if not isinstance(recode, Mapping):
        raise SiteDataError(f"{label}, column {column!r}: 'recode' must be an object {{local value: value}}")
    missing = spec.get("missing_values")
    return ColumnMap(
        column=column,
        feature=spec["feature"],
        unit=spec.get("unit"),
        recode={str(k): v for k, v in recode.items()},
        missing_values=_strings(missing, label) if missing is not None else (),
    )


@cache
def units() -> pint.UnitRegistry:
    """One unit registry per process (building one takes a moment)."""
    return pint.UnitRegistry()


def unit_factor(local: str, feature: Feature) -> tuple[float, float]:
    """``(scale, offset)`` such that ``canonical = local_value * scale + offset``.

    Mass and substance concentrations convert through the feature's ``molar_mass``.

    Raises:
        SiteDataError: a unit ``pint`` cannot parse, or one that does not convert to the feature's unit.
    """
    ureg = units()
    if feature.unit is None:
        raise SiteDataError(f"feature {feature.name!r} has no unit in the dictionary; the mapping gives one")
    try:
        source, target = ureg.Unit(local), ureg.Unit(feature.unit)
    except Exception as exc:  # noqa: BLE001 - pint's parser also raises TokenError, AssertionError...
        raise SiteDataError(
            f"feature {feature.name!r}: unit cannot be parsed ({type(exc).__name__})"
        ) from exc
    molar = None
    if feature.molar_mass:
        try:
            molar = ureg.Quantity(feature.molar_mass)
        except Exception as exc:  # noqa: BLE001 - the same parser
            raise SiteDataError(
                f"feature {feature.name!r}: the dictionary's molar_mass cannot be parsed "
                f"({type(exc).__name__})"
            ) from exc
    try:
        zero = ureg.Quantity(0.0, source)
        one = ureg.Quantity(1.0, source)
        if zero.dimensionality != ureg.Quantity(1.0, target).dimensionality and molar is not None:
            ratio = (one * molar).dimensionality == ureg.Quantity(1.0, target).dimensionality
            zero, one = (zero * molar, one * molar) if ratio else (zero / molar, one / molar)
        offset = float(zero.to(target).magnitude)
        return float(one.to(target).magnitude) - offset, offset
    except (pint.errors.DimensionalityError, pint.errors.OffsetUnitCalculusError) as exc:
        raise SiteDataError(
            f"feature {feature.name!r}: unit {local!r} does not convert to {feature.unit!r}"
        ) from exc
