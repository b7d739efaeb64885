"""Loading one site's own tabular files, with errors that say which file and which column.

A site keeps ``<data_root>/heart_disease/train.csv`` and ``test.csv`` (UCI codes, one row per
patient). Nothing here logs a patient value: messages name the kit's own file names, columns,
line numbers and counts only, never a cell or a file name the hospital chose
(:mod:`fedhealth.data.messages`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedhealth.constants import (
    HEART_DATASET_DIR,
    SITE_CONFIG_DEFAULT_FILE,
    SITE_CONFIG_FILE,
    SITE_DATA_ROOT_KEY,
    SITE_LIMITS_KEY,
    SITE_MAX_LOCAL_STEPS_KEY,
    SITE_SCOPE_LIMITS_KEY,
    TEST_FILE,
    TRAIN_FILE,
)
from fedhealth.data.messages import SiteDataError, file_label

# Raw columns every site file carries: UCI codes, one row per patient, binary target.
RAW_COLUMNS = (
    "age",
    "sex",
    "cp",
    "trestbps",
    "chol",
    "fbs",
    "restecg",
    "thalach",
    "exang",
    "oldpeak",
)
TARGET = "target"


@dataclass(frozen=True)
class SiteTable:
    """Raw feature columns (UCI codes) and binary labels of one split at one site."""

    features: pd.DataFrame
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def read_settings_file(path: Path, label: str) -> dict[str, Any]:
    """One settings file as a dict, its structure checked; errors name ``label`` and the key.

    Raises:
        SiteDataError: not valid JSON, not a JSON object, ``max_local_steps`` not a whole number of
            at least 1, or ``limits``/``scope_limits`` not JSON objects (of objects).
    """
    try:
        settings = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise SiteDataError(f"{label}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(settings, dict):
        raise SiteDataError(f"{label}: must hold a JSON object of settings, not a {type(settings).__name__}")
    cap = settings.get(SITE_MAX_LOCAL_STEPS_KEY)
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise SiteDataError(
            f"{label}: {SITE_MAX_LOCAL_STEPS_KEY!r} must be a whole number of local optimizer steps, "
            f"at least 1 (or null for no cap), got {cap!r}"
        )
    limits = settings.get(SITE_LIMITS_KEY)
    if limits is not None and not isinstance(limits, dict):
        raise SiteDataError(f"{label}: {SITE_LIMITS_KEY!r} must be a JSON object of limits")
    scopes = settings.get(SITE_SCOPE_LIMITS_KEY)
    if scopes is not None and (
        not isinstance(scopes, dict) or not all(isinstance(v, dict) for v in scopes.values())
    ):
        raise SiteDataError(
            f"{label}: {SITE_SCOPE_LIMITS_KEY!r} must be a JSON object of {{scope name: {{limits}}}}"
        )
    return settings


def settings_layers(site_root: Path) -> list[tuple[str, dict[str, Any]]]:
    """The site's settings files that exist, as ``(label, settings)``, the one that wins last.

    ``local/fedhealth_site.json.default`` (written at provisioning) first, then the hospital's own
    ``local/fedhealth_site.json``. No job and no server can write either file.
    """
    layers = []
    for name in (SITE_CONFIG_DEFAULT_FILE, SITE_CONFIG_FILE):
        path = Path(site_root) / "local" / name
        if path.is_file():
            label = f"local/{name}"
            layers.append((label, read_settings_file(path, label)))
    return layers


def merge_settings(layers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Later layers win key by key; ``limits`` merge key by key, ``scope_limits`` scope by scope and then
    key by key, so a hospital that sets one limit keeps the provisioned others."""
    merged: dict[str, Any] = {}
    for _, settings in layers:
        for key, value in settings.items():
            if key == SITE_LIMITS_KEY and value is not None:
                merged[key] = {**(merged.get(key) or {}), **value}
            elif key == SITE_SCOPE_LIMITS_KEY and value is not None:
                scopes = dict(merged.get(key) or {})
                for scope, limits in value.items():
                    scopes[scope] = {**scopes.get(scope, {}), **limits}
                merged[key] = scopes
            else:
                merged[key] = value
    return merged


def site_settings(site_root: Path) -> dict[str, Any]:
    """A site's settings: ``local/fedhealth_site.json.default`` merged under ``local/fedhealth_site.json``.

    ``{}`` when neither file exists. The provisioned default carries the consortium's floors; the
    hospital's own file wins key by key (:func:`merge_settings`). Keys the kit reads:

    * ``data_root``: the data folder, absolute or relative to the site folder (:func:`resolve_data_root`).
    * ``max_local_steps``: the site's maximum local optimizer steps per round, for a site that knows
      it is slow (a whole number, at least 1; ``null`` or absent means no cap). The executor trains
      ``min(job's workload, cap)`` steps and reports the steps it took, so FedNova can weight them.
    * ``limits``, ``scope_limits``, ``dp_max_epsilon``: what the site accepts from a job
      (:mod:`fedhealth.policy.site_limits`).

    Raises:
        SiteDataError: a file is not valid JSON or not a JSON object, or a key has the wrong type;
            the message names the file and the key, never a value from data.
    """
    return merge_settings(settings_layers(site_root))


def resolve_data_root(site_root: Path) -> Path:
    """A site's data folder: ``local/fedhealth_site.json`` ``data_root`` if set, else ``<site>/data``.

    The data location is the site's own setting (either settings file); no job and no server names it.

    Raises:
        SiteDataError: the settings file is unusable (:func:`site_settings`).
    """
    root = site_settings(site_root).get(SITE_DATA_ROOT_KEY)
    if root:
        root_path = Path(root)
        return root_path if root_path.is_absolute() else Path(site_root) / root_path
    return Path(site_root) / "data"


def read_split(path: Path, *, label: str | None = None) -> SiteTable:
    """Read one split file and check every column FLamby's preprocessing needs.

    Args:
        path: the CSV file.
        label: how messages name the file; default: ``data file heart_disease/train.csv`` for the
            kit's own file names, ``a data file (name not shown)`` for a name the hospital chose (it
            may carry an identifier).

    Raises:
        SiteDataError: the file is missing or unreadable, a column is missing, a value is not
            numeric or is empty, or the label is not 0/1. The message gives lines and counts,
            never a value.
    """
    path = Path(path)
    if label is None:
        name = file_label(
            path, kit_names=(TRAIN_FILE, TEST_FILE), kit_folders=(HEART_DATASET_DIR,), fallback=""
        )
        label = f"data file {name}" if name else "a data file (name not shown)"
    if not path.is_file():
        raise SiteDataError(f"{label} is missing at this site")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SiteDataError(f"{label} cannot be read as CSV: {type(exc).__name__}") from exc
    except OSError as exc:  # its message carries the full path
        raise SiteDataError(f"{label} cannot be opened: {type(exc).__name__}") from exc
    missing = [c for c in (*RAW_COLUMNS, TARGET) if c not in df.columns]
    if missing:
        raise SiteDataError(f"{label} has no column {', '.join(repr(c) for c in missing)}")
    for column in (*RAW_COLUMNS, TARGET):
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() & df[column].notna()
        if bad.any():
            raise SiteDataError(f"{label}, column {column!r}: non-numeric value in {_lines(bad)}")
        if values.isna().any():
            raise SiteDataError(f"{label}, column {column!r}: empty value in {_lines(values.isna())}")
        df[column] = values
    labels = df[TARGET].to_numpy()
    not_binary = ~np.isin(labels, (0, 1))
    if not_binary.any():
        raise SiteDataError(f"{label}, column {TARGET!r}: labels must be 0 or 1 ({_lines(not_binary)})")
    if len(df) == 0:
        raise SiteDataError(f"{label} has no rows")
    return SiteTable(features=df[list(RAW_COLUMNS)].astype("float64"), labels=labels.astype("float32"))


def _lines(bad: pd.Series | np.ndarray) -> str:
    """``line(s) 3, 7, 9 (12 in all)``: file lines (header = 1) of the first three bad rows, and the count."""
    rows = np.flatnonzero(np.asarray(bad))
    shown = ", ".join(str(i + 2) for i in rows[:3])
    return f"line(s) {shown}" + (f" ({len(rows)} in all)" if len(rows) > 3 else "")


def load_site(data_root: Path) -> tuple[SiteTable, SiteTable]:
    """The site's train and test splits from ``<data_root>/heart_disease/``."""
    folder = Path(data_root) / HEART_DATASET_DIR
    return read_split(folder / TRAIN_FILE), read_split(folder / TEST_FILE)


def write_site(data_root: Path, train: pd.DataFrame, test: pd.DataFrame) -> Path:
    """Write one hospital's splits into its own data folder; returns that folder."""
    folder = Path(data_root) / HEART_DATASET_DIR
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / TRAIN_FILE, index=False)
    test.to_csv(folder / TEST_FILE, index=False)
    return folder
