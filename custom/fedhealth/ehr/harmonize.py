"""A hospital's export in its own dialect -> the dictionary's canonical features, with a report.

Every cell is read as text; the site's missing tokens, per-column missing values, unit conversion,
recoding and plausible ranges apply in that order. A value that cannot be used is set missing and
counted by column and file line; only a structural problem (no target column, duplicate ids, an
unreadable or empty file) stops the site. Nothing here puts a cell value into a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fedhealth.data.messages import SiteDataError
from fedhealth.ehr.dictionary import DataDictionary, Feature
from fedhealth.ehr.mapping import ColumnMap, SiteMapping, unit_factor
from fedhealth.ehr.report import DataReport, lines


@dataclass(frozen=True)
class Harmonized:
    """Canonical features (one column per dictionary feature), 0/1 labels and what was found."""

    features: pd.DataFrame
    labels: np.ndarray
    report: DataReport

    def __len__(self) -> int:
        return len(self.labels)


def read_table(path: Path, *, label: str) -> pd.DataFrame:
    """All cells of a CSV as stripped strings (``""`` for an empty cell).

    Raises:
        SiteDataError: the file is missing, not UTF-8, not CSV, or has no data row.
    """
    path = Path(path)
    if not path.is_file():
        raise SiteDataError(f"{label} is missing at this site")
    try:
        # index_col=False: a row with more fields than the header (a trailing comma on every line, as
        # spreadsheets export) must not make the first column the index and shift every value left
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8", index_col=False
        )
    except UnicodeDecodeError as exc:
        where = _first_non_utf8_line(path)
        raise SiteDataError(f"{label} is not UTF-8 text (line {where}); export it as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise SiteDataError(f"{label} is empty") from exc
    except pd.errors.ParserError as exc:
        raise SiteDataError(f"{label} cannot be read as CSV: {type(exc).__name__}") from exc
    except OSError as exc:
        raise SiteDataError(f"{label} cannot be opened: {type(exc).__name__}") from exc
    if len(df) == 0:
        raise SiteDataError(f"{label} has a header but no rows")
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


def _first_non_utf8_line(path: Path) -> int:
    """The file line (header = 1) of the first byte that is not UTF-8.

    pandas' decoding error counts bytes from the start of a parser buffer, not of the file.
    """
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return data.count(b"\n", 0, exc.start) + 1
    return 1


def harmonize(
    raw: pd.DataFrame, dictionary: DataDictionary, mapping: SiteMapping, *, label: str
) -> Harmonized:
    """Map a table read by :func:`read_table` onto the dictionary.

    Raises:
        SiteDataError: the target column or a required feature is absent, the mapping does not fit the
            file, a target value is neither positive nor negative, or a patient id repeats.
    """
    report = DataReport(label=label, rows=len(raw))
    try:
        used, report.ignored_columns = mapping.resolve(list(raw.columns), dictionary)
    except SiteDataError as exc:
        raise SiteDataError(f"{label}: {exc}") from exc
    report.absent_features = [f.name for f in dictionary.features if f.name not in used]
    required = [f.name for f in dictionary.features if f.required and f.name not in used]
    if required:
        raise SiteDataError(f"{label}: required feature(s) {required} have no column in this table")
    if mapping.id_column is not None:
        _check_ids(raw, mapping.id_column, label)
    labels = _labels(raw[mapping.target.column], mapping, label)
    tokens = set(mapping.missing_tokens)
    columns = {}
    for feature in dictionary.features:
        spec = used.get(feature.name)
        if spec is None:
            columns[feature.name] = pd.Series(np.nan, index=raw.index, dtype=_dtype(feature))
            continue
        text = raw[spec.column]
        missing = text.isin(tokens | set(spec.missing_values))
        columns[feature.name] = _convert(text.where(~missing), feature, spec, report, label)
    return Harmonized(features=pd.DataFrame(columns), labels=labels, report=report)


def _dtype(feature: Feature) -> str:
    return "object" if feature.kind == "categorical" else "float64"


def _check_ids(raw: pd.DataFrame, column: str, label: str) -> None:
    if column not in raw.columns:
        raise SiteDataError(f"{label}: the id column {column!r} named in the mapping is missing")
    duplicated = raw[column].duplicated(keep=False).to_numpy()
    if duplicated.any():
        raise SiteDataError(f"{label}, column {column!r}: duplicate patient ids in {lines(duplicated)}")


def _labels(text: pd.Series, mapping: SiteMapping, label: str) -> np.ndarray:
    target = mapping.target
    positive, negative = text.isin(target.positive), text.isin(target.negative)
    unknown = ~(positive | negative)
    if unknown.any():
        raise SiteDataError(
            f"{label}, target column {target.column!r}: value neither positive nor negative in the "
            f"mapping in {lines(unknown.to_numpy())}"
        )
    return positive.to_numpy().astype("float32")


def _convert(text: pd.Series, feature: Feature, spec: ColumnMap, report: DataReport, label: str) -> pd.Series:
    present = text.notna().to_numpy()
    if feature.kind == "categorical":
        return _categorical(text, feature, spec, report, present)
    if feature.kind == "binary":
        values = text.map(lambda v: spec.recode.get(v, v) if v is not None else None)
        numbers = pd.to_numeric(values, errors="coerce")
        bad = present & ~np.isin(numbers.to_numpy(), (0.0, 1.0))
        report.add("not_binary", spec.column, bad, "not 0/1 after recoding")
        return numbers.where(~bad).astype("float64")
    numbers = pd.to_numeric(text, errors="coerce")
    report.add("non_numeric", spec.column, present & numbers.isna().to_numpy())
    if spec.unit is not None and spec.unit != feature.unit:
        try:
            scale, offset = unit_factor(spec.unit, feature)
        except SiteDataError as exc:
            raise SiteDataError(f"{label}, column {spec.column!r}: {exc}") from exc
        numbers = numbers * scale + offset
    if feature.range is not None:
        low, high = feature.range
        outside = (numbers.notna() & ((numbers < low) | (numbers > high))).to_numpy()
        report.add(
            "out_of_range", spec.column, outside, f"outside {low:g}..{high:g} {feature.unit or ''}".strip()
        )
        numbers = numbers.where(~outside)
    return numbers.astype("float64")


def _integer_text(value: str) -> str | None:
    """``"2"`` for a value written as ``"2.0"`` (a code exported through a float column), else ``None``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return str(int(number)) if number.is_integer() else None


def _categorical(
    text: pd.Series, feature: Feature, spec: ColumnMap, report: DataReport, present: np.ndarray
) -> pd.Series:
    # a raw value matches (1) the site's recode, (2) a category name, (3) a code: later updates win
    lookup = {code: category for category, codes in feature.codes.items() for code in codes}
    lookup.update({c: c for c in feature.categories})
    lookup.update({str(k): str(v) for k, v in spec.recode.items()})
    mapped = text.map(lambda v: lookup.get(v, lookup.get(_integer_text(v))) if v is not None else None)
    bad = present & mapped.isna().to_numpy()
    report.add("unknown_code", spec.column, bad, "not a category or code of the dictionary")
    not_canonical = mapped.notna() & ~mapped.isin(feature.categories)
    if not_canonical.any():  # a recode to a category the dictionary lacks: the mapping is wrong
        report.add("unknown_code", spec.column, not_canonical.to_numpy(), "recoded to no dictionary category")
        mapped = mapped.where(~not_canonical)
    return mapped.astype("object")
