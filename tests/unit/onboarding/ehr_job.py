"""A small tabular federation for the onboarding tests: a dictionary, three sites' profiles, the
aligned schema, a TabularNet trained on the federation's encoded rows, and a new hospital's export in
its own dialect (other column names, mmol/L cholesterol, text codes, yes/no outcome) with its mapping.

Everything is synthetic and seeded; the outcome follows one logistic model (``_logit``), or, for a
hospital whose patients differ (``shifted``), another one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xgboost as xgb

from fedhealth import constants as C
from fedhealth.ehr.alignment import AlignmentPolicy, align
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.encoding import encode
from fedhealth.ehr.profile import site_profile
from fedhealth.models.tabular import TabularNet
from fedhealth.training.loops import LocalTrainConfig, train_local
from fedhealth.trees.model import MODEL_FILE

DICTIONARY = {
    "name": "toy_cardio",
    "version": 1,
    "target": {"name": "event", "description": "cardiac event within a year"},
    "features": [
        {"name": "age", "kind": "numeric", "unit": "year", "range": [18, 100]},
        {"name": "sex", "kind": "binary", "description": "1 = male"},
        {
            "name": "chol",
            "kind": "numeric",
            "unit": "mg/dL",
            "range": [80, 700],
            "molar_mass": "386.65 g/mol",
        },
        {
            "name": "smoker",
            "kind": "categorical",
            "categories": ["never", "former", "current"],
            "codes": {"current": ["F17.210"]},
        },
        {"name": "bnp", "kind": "numeric", "unit": "pg/mL", "range": [0, 5000]},
        {"name": "hba1c", "kind": "numeric", "unit": "percent", "range": [3, 20]},
    ],
}
# The new hospital's mapping: renamed columns, a unit conversion, recodes, an ignored column.
MAPPING = {
    "id_column": "patient_id",
    "missing_tokens": ["", "NA", "-9"],
    "target": {"column": "outcome", "positive": ["yes"], "negative": ["no"]},
    "columns": {
        "age_years": "age",
        "gender": {"feature": "sex", "recode": {"M": 1, "F": 0}},
        "chol_mmol": {"feature": "chol", "unit": "mmol/L"},
        "smoking": {"feature": "smoker", "recode": {"never smoked": "never", "ex-smoker": "former"}},
        "remarks": None,
    },
}
CHOL_MG_PER_MMOL = 38.665  # 386.65 g/mol
# The federation: three hospitals; one does not record BNP, only one records HbA1c (dropped).
FEDERATION = {"site-1": (180, {"bnp"}), "site-2": (150, {"hba1c"}), "site-3": (170, {"hba1c"})}
TRAIN = {"epochs": 10, "lr": 0.05, "batch_size": 16}


def _logit(df: pd.DataFrame, shifted: bool) -> np.ndarray:
    bnp = np.log(df["bnp"].fillna(150.0))
    if shifted:  # another population: the outcome follows sex and age the other way round
        return -0.12 * (df["age"] - 60) - 2.5 * (df["sex"] - 0.5)
    smokes = (df["smoker"] == "current").astype(float)
    return 0.1 * (df["age"] - 60) + 0.02 * (df["chol"] - 220) + 1.5 * smokes + 1.0 * (bnp - 5.0)


def patients(n: int, seed: int, *, shifted: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` patients on the dictionary's canonical features, and their 0/1 outcome."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(60, 10, n).clip(20, 95).round(),
            "sex": rng.integers(0, 2, n).astype(float),
            "chol": rng.normal(220, 40, n).clip(100, 600).round(),
            "smoker": rng.choice(["never", "former", "current"], n, p=[0.5, 0.3, 0.2]).astype(object),
            "bnp": rng.lognormal(5.0, 0.8, n).clip(1, 4900).round(),
            "hba1c": rng.normal(6.0, 1.0, n).clip(4, 15).round(1),
        }
    )
    p = 1.0 / (1.0 + np.exp(-_logit(df, shifted).to_numpy()))
    return df, (rng.random(n) < p).astype("float32")


def _aligned(dictionary: dict, policy: AlignmentPolicy) -> tuple[dict, np.ndarray, np.ndarray]:
    """The three hospitals' profiles aligned under ``policy``: the schema, their encoded rows, labels."""
    data = DataDictionary.from_dict(dictionary)
    tables, profiles = {}, {}
    for i, (site, (n, absent)) in enumerate(FEDERATION.items()):
        features, labels = patients(n, seed=i)
        features.loc[:, sorted(absent)] = np.nan
        tables[site] = (features, labels)
        profiles[site] = site_profile(features, data, min_cell=5)
    schema = align(profiles, data, policy)
    x = np.concatenate([encode(f, schema) for f, _ in tables.values()])
    y = np.concatenate([labels for _, labels in tables.values()])
    return schema, x, y


def federation(dictionary: dict = DICTIONARY) -> tuple[dict, TabularNet]:
    """The aligned schema of the three hospitals' profiles and a model trained on their encoded rows."""
    schema, x, y = _aligned(dictionary, AlignmentPolicy())
    model = TabularNet(in_features=len(schema["columns"]), seed=0)
    config = LocalTrainConfig(lr=TRAIN["lr"], batch_size=TRAIN["batch_size"], local_epochs=TRAIN["epochs"])
    train_local(model, x, y, config, generator=torch.Generator().manual_seed(0))
    return schema, model


def tree_federation(dictionary: dict = DICTIONARY) -> tuple[dict, bytes]:
    """The same hospitals aligned for trees (imputation none) and XGBoost trained on their pooled rows."""
    schema, x, y = _aligned(dictionary, AlignmentPolicy(imputation="none", indicators=False))
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, label=y, missing=np.nan, feature_names=schema["columns"]), 20)
    return schema, bytes(booster.save_raw("json"))


def write_tree_result(root: Path, schema: dict, model: bytes) -> Path:
    """A downloaded tree job result: the server's run folder with xgboost_model.json and the schema."""
    workspace = root / "workspace"
    workspace.mkdir(parents=True)
    (workspace / MODEL_FILE).write_bytes(model)
    (workspace / C.EHR_SCHEMA_FILE).write_text(json.dumps(schema))
    write_job(root / "job")
    return root


def write_result(root: Path, schema: dict, model: TabularNet) -> Path:
    """A downloaded job result: the server's run folder with the model and the schema, and the job."""
    workspace = root / "workspace"
    (workspace / "app_server").mkdir(parents=True)
    torch.save({"model": model.state_dict()}, workspace / "app_server" / "FL_global_model.pt")
    (workspace / C.EHR_SCHEMA_FILE).write_text(json.dumps(schema))
    write_job(root / "job")
    return root


def write_job(folder: Path, dictionary: dict = DICTIONARY) -> Path:
    """A job folder whose client app config carries the dictionary (as the job generator writes it)."""
    executor = {
        "id": "executor",
        "path": "fedhealth.executors.site_executor.SiteExecutor",
        "args": {"task": "tabular", "task_args": {"dictionary": dictionary, "dataset": "toy_cardio"}},
    }
    config = folder / "app" / "config"
    config.mkdir(parents=True)
    (config / "config_fed_client.json").write_text(json.dumps({"executors": [{"executor": executor}]}))
    return folder


def export(features: pd.DataFrame, labels: np.ndarray, *, first_id: int = 0) -> pd.DataFrame:
    """The hospital's own export of canonical rows: its column names, units and codes (no BNP)."""
    smoking = features["smoker"].map({"never": "never smoked", "former": "ex-smoker", "current": "F17.210"})
    return pd.DataFrame(
        {
            "patient_id": [f"P{first_id + i:05d}" for i in range(len(features))],
            "age_years": features["age"].astype(int).astype(str),
            "gender": features["sex"].map({1.0: "M", 0.0: "F"}),
            "chol_mmol": (features["chol"] / CHOL_MG_PER_MMOL).round(3).astype(str),
            "smoking": smoking,
            "hba1c": features["hba1c"].astype(str),
            "ward": "cardiology",
            "remarks": "",
            "outcome": np.where(labels == 1, "yes", "no"),
        }
    )


def write_site(
    folder: Path, n: int, *, seed: int = 7, shifted: bool = False, flaws: bool = True, mapping: dict = MAPPING
) -> Path:
    """The new hospital's folder: ``train.csv`` and ``test.csv`` (2:1) and its ``mapping.json``.

    With ``flaws``, ``train.csv`` has a non-numeric age (line 2), two cholesterol values outside the
    plausible range after conversion (lines 5 and 9) and an unknown smoking code (line 7).
    """
    features, labels = patients(n, seed, shifted=shifted)
    table = export(features, labels)
    if flaws:
        table.loc[0, "age_years"] = "unknown"
        table.loc[[3, 7], "chol_mmol"] = "25.0"  # 967 mg/dL
        table.loc[5, "smoking"] = "pipe"
    folder.mkdir(parents=True, exist_ok=True)
    cut = 2 * n // 3
    table.iloc[:cut].to_csv(folder / "train.csv", index=False)
    table.iloc[cut:].to_csv(folder / "test.csv", index=False)
    (folder / "mapping.json").write_text(json.dumps(mapping))
    return folder
