"""What a new site needs to try the global model: the model, the global scaling and its own rows.

The model and the scaling come from a finished heart job's downloaded result
(``<job>/workspace/app_server/FL_global_model.pt`` and ``<job>/workspace/fedhealth_scaling.json``);
the rows from the site's own ``heart_disease/`` folder. Errors name files and columns, never
patient values, and name a hospital's own CSV files by position only (:func:`file_labels`).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from fedhealth.constants import (
    EHR_SCHEMA_FILE,
    HEART_DATASET_DIR,
    S_FEATURES,
    S_MEAN,
    S_STD,
    SCALING_STATE_FILE,
    TEST_FILE,
    TRAIN_FILE,
)
from fedhealth.data.features import CHOL_MISSING, Scaler, feature_names
from fedhealth.data.messages import file_label
from fedhealth.data.site_data import SiteDataError, SiteTable, read_split
from fedhealth.models.state import tabular_from_weights
from fedhealth.models.tabular import TabularNet

# How far above the model file to look for the scaling: app_server/ -> workspace/ -> <job id>/.
SCALING_SEARCH_DEPTH = 3


class OnboardingError(ValueError):
    """The model or scaling file cannot be used; the message names the file and what is wrong."""


def read_checkpoint(path: Path) -> dict:
    """The state dict in a FLARE ``FL_global_model.pt`` (``{"model": ...}``) or a bare state dict.

    Only tensors and plain containers are unpickled (``weights_only=True``): a downloaded file
    never gets to run code.

    Raises:
        OnboardingError: missing, unreadable or holding no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise OnboardingError(f"model file {path} does not exist")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise OnboardingError(f"model file {path.name} cannot be read as a torch checkpoint: {exc}") from exc
    weights = saved.get("model", saved) if isinstance(saved, dict) else None
    if not isinstance(weights, dict):
        raise OnboardingError(f"model file {path.name} holds no state dict (expected {{'model': ...}})")
    return weights


def load_global_model(path: Path) -> TabularNet:
    """Rebuild the global model from a FLARE ``FL_global_model.pt`` (or a bare state dict).

    Raises:
        OnboardingError: missing, unreadable or not a fedhealth TabularNet.
    """
    path = Path(path)
    weights = read_checkpoint(path)
    try:
        return tabular_from_weights(weights)
    except ValueError as exc:
        raise OnboardingError(f"model file {path.name}: {exc}") from exc


def find_scaling(model_path: Path) -> Path:
    """``fedhealth_scaling.json`` next to the model file or up to two folders above it.

    Raises:
        OnboardingError: when none is found (pointing to ``--schema`` when the job is a tabular one).
    """
    folder = Path(model_path).resolve().parent
    for candidate in [folder, *folder.parents][:SCALING_SEARCH_DEPTH]:
        if (candidate / SCALING_STATE_FILE).is_file():
            return candidate / SCALING_STATE_FILE
    if any(
        (candidate / EHR_SCHEMA_FILE).is_file()
        for candidate in [folder, *folder.parents][:SCALING_SEARCH_DEPTH]
    ):
        raise OnboardingError(
            f"no {SCALING_STATE_FILE} next to or above {Path(model_path).name}: this job aligned its "
            f"features ({EHR_SCHEMA_FILE} is next to the model): pass --schema "
            "<the downloaded job result folder>"
        )
    raise OnboardingError(
        f"no {SCALING_STATE_FILE} next to or above {Path(model_path).name} in the job result; "
        "pass the global scaling file with --scaling"
    )


def load_scaling(path: Path, *, n_features: int) -> tuple[Scaler, bool]:
    """The global scaling and whether cholesterol 0 means "not measured" (from the feature names).

    Raises:
        OnboardingError: missing or malformed file, or a feature count that differs from the model's.
    """
    path = Path(path)
    if not path.is_file():
        raise OnboardingError(f"scaling file {path} does not exist")
    try:
        stats = json.loads(path.read_text())
        mean, std = list(stats[S_MEAN]), list(stats[S_STD])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise OnboardingError(
            f"scaling file {path.name} is not a fedhealth scaling (needs '{S_MEAN}' and '{S_STD}' lists)"
        ) from exc
    names = list(stats.get(S_FEATURES) or [])
    counts = {"mean": len(mean), "std": len(std), **({"features": len(names)} if names else {})}
    if len(set(counts.values())) != 1:
        raise OnboardingError(f"scaling file {path.name} has lists of different lengths: {counts}")
    if len(mean) != n_features:
        raise OnboardingError(
            f"the model expects {n_features} features but scaling file {path.name} has {len(mean)}; "
            "they do not come from the same job"
        )
    chol_missing = names[-1] == CHOL_MISSING if names else n_features == len(feature_names(True))
    expected = feature_names(chol_missing)
    if (names and names != expected) or len(mean) != len(expected):
        raise OnboardingError(
            f"scaling file {path.name} describes features this kit does not encode "
            f"(expected {len(expected)}: {expected})"
        )
    return Scaler.from_stats({S_MEAN: mean, S_STD: std}), chol_missing


def site_files(data: Path) -> list[Path]:
    """The CSV files to read: ``data`` itself if it is a file, else ``data/heart_disease/*.csv``.

    Raises:
        SiteDataError: when there is no such file (the message does not repeat the path: a
            hospital's folder names may carry identifiers).
    """
    data = Path(data)
    if data.is_file():
        return [data]
    folder = data / HEART_DATASET_DIR
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        raise SiteDataError(
            f"no CSV file in the data folder's {HEART_DATASET_DIR}/ (a site keeps its rows in "
            f"{HEART_DATASET_DIR}/*.csv, or pass one CSV file)"
        )
    return files


def file_labels(files: list[Path]) -> list[str]:
    """How reports name the files read: the kit's own names (``heart_disease/train.csv``) as they are,
    any other name as ``CSV file 2 of 3`` (sorted by name), since a hospital's file name may carry an
    identifier."""
    labels = []
    for i, path in enumerate(files, start=1):
        name = file_label(
            path, kit_names=(TRAIN_FILE, TEST_FILE), kit_folders=(HEART_DATASET_DIR,), fallback=""
        )
        labels.append(name or f"CSV file {i} of {len(files)}")
    return labels


def read_site_rows(data: Path) -> tuple[SiteTable, list[str]]:
    """All labelled rows of the site (every CSV concatenated) and how reports name the files read."""
    files = site_files(data)
    labels = file_labels(files)
    tables = [read_split(f, label=f"data file {label}") for f, label in zip(files, labels, strict=True)]
    features = pd.concat([t.features for t in tables], ignore_index=True)
    labels_array = np.concatenate([t.labels for t in tables])
    return SiteTable(features=features, labels=labels_array), labels


def split_rows(labels: np.ndarray, *, holdout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the fine-tuning and the evaluation part, stratified on the label when possible.

    Raises:
        SiteDataError: fewer than two labelled patients.
    """
    n = len(labels)
    if n < 2:
        raise SiteDataError(f"the site has {n} labelled patient(s); at least 2 are needed to split")
    index = np.arange(n)
    try:
        tune, evaluation = train_test_split(
            index, test_size=holdout_fraction, random_state=seed, shuffle=True, stratify=labels
        )
    except ValueError:  # a class with a single patient, or too few rows for stratification
        tune, evaluation = train_test_split(
            index, test_size=holdout_fraction, random_state=seed, shuffle=True
        )
    return np.sort(tune), np.sort(evaluation)
