"""What a new site of a ``tabular`` job needs: the job's data dictionary and aligned schema, its own table.

- the aligned schema: ``ehr_schema.json`` (the server keeps it in its run folder), the file itself or
  found in a downloaded job result;
- the data dictionary: a JSON file, or ``task_args["dictionary"]`` of the ``SiteExecutor`` in a job
  folder's ``app*/config/config_fed_client.json`` (the job as submitted, or a downloaded result);
- the site's table: every ``*.csv`` of a folder that also holds the site's ``mapping.json``
  (:mod:`fedhealth.ehr.mapping`), or one CSV next to it, harmonized file by file
  (:func:`fedhealth.ehr.harmonize.harmonize`).

Messages name files, columns and lines, never a cell; a hospital's own CSV names are shown by position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from fedhealth import constants as C
from fedhealth.data.messages import SiteDataError, file_label
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.encoding import encode
from fedhealth.ehr.harmonize import harmonize, read_table
from fedhealth.ehr.mapping import MAPPING_FILE, SiteMapping
from fedhealth.ehr.report import DataReport
from fedhealth.onboarding.artifacts import OnboardingError, load_global_model
from fedhealth.trees.model import MODEL_FILE as TREE_MODEL_FILE
from fedhealth.trees.model import TreeModel

EXECUTOR_PATH = "fedhealth.executors.site_executor.SiteExecutor"
CLIENT_CONFIG = "config_fed_client.json"
MODEL_FILE = "FL_global_model.pt"
_SCHEMA_KEYS = ("dictionary", "features", "columns", "mean", "std")


@dataclass(frozen=True)
class JobDictionary:
    """The job's data dictionary and, when read from a job folder, the dataset folder it names."""

    dictionary: DataDictionary
    dataset: str | None = None


@dataclass(frozen=True)
class SiteRows:
    """The site's labelled rows on the dictionary's features, with each file's report."""

    features: pd.DataFrame
    labels: np.ndarray
    files: list[str]
    reports: list[DataReport]
    columns: dict[str, str]  # feature -> the site's column that records it


@dataclass(frozen=True)
class TabularInputs:
    """Everything validate-site judges with: the global model, the site's encoded rows and notes."""

    model: nn.Module  # a TabularNet, or a TreeModel for a tree job
    x: np.ndarray
    rows: SiteRows
    dictionary: DataDictionary
    notes: list[str]


def read_json(path: Path, what: str) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OnboardingError(
            f"{what} {Path(path).name} cannot be read as JSON ({type(exc).__name__})"
        ) from exc


def load_dictionary(source: Path) -> JobDictionary:
    """The data dictionary from a JSON file or from a job folder's client app config.

    Raises:
        OnboardingError: no such file, no SiteExecutor with a dictionary in the job folder, apps that
            carry different dictionaries, or a malformed dictionary (the message says which key).
    """
    source = Path(source)
    if source.is_file():
        data, dataset = read_json(source, "data dictionary"), None
        where = source.name
    elif source.is_dir():
        data, dataset = _dictionary_from_job(source)
        where = f"the job's {CLIENT_CONFIG}"
    else:
        raise OnboardingError(f"data dictionary {source} does not exist (give a JSON file or a job folder)")
    try:
        return JobDictionary(DataDictionary.from_dict(data), dataset)  # type: ignore[arg-type]
    except ValueError as exc:
        raise OnboardingError(f"{where}: {exc}") from exc


def executor_args(config: object) -> list[dict]:
    """The args of each ``SiteExecutor`` in one parsed ``config_fed_client.json``."""
    executors = config.get("executors", []) if isinstance(config, dict) else []
    found = []
    for entry in executors:
        executor = entry.get("executor", {}) if isinstance(entry, dict) else {}
        args = (
            executor.get("args", {})
            if isinstance(executor, dict) and executor.get("path") == EXECUTOR_PATH
            else {}
        )
        if isinstance(args, dict) and args:
            found.append(args)
    return found


def site_executor_args(folder: Path) -> list[dict]:
    """The args of each ``SiteExecutor`` in every ``config_fed_client.json`` under a job or result folder."""
    return [
        args
        for path in sorted(Path(folder).rglob(CLIENT_CONFIG))
        for args in executor_args(read_json(path, "app config"))
    ]


def _dictionary_from_job(folder: Path) -> tuple[object, str | None]:
    found = []
    for args in site_executor_args(folder):
        task_args = args.get("task_args") or {}
        if isinstance(task_args, dict) and "dictionary" in task_args:
            found.append((task_args["dictionary"], task_args.get("dataset")))
    if not found:
        raise OnboardingError(
            f"no {CLIENT_CONFIG} under {folder.name} gives the {EXECUTOR_PATH.rsplit('.', 1)[1]} a "
            "task_args 'dictionary' (is it a tabular job?); pass the dictionary's JSON file instead"
        )
    if any(d != found[0][0] for d, _ in found):
        raise OnboardingError(f"the apps under {folder.name} carry different data dictionaries")
    dataset = found[0][1]
    return found[0][0], dataset if isinstance(dataset, str) else None


def find_in_result(source: Path, name: str, *, kind: str = "tabular") -> Path:
    """``source`` itself when it is a file, else the file ``name`` nearest the top of the folder.

    Raises:
        OnboardingError: no such file or folder, or no ``name`` under the folder.
    """
    source = Path(source)
    if source.is_file():
        return source
    if not source.is_dir():
        raise OnboardingError(f"{source} does not exist (give the job result folder or the {name} file)")
    found = sorted(source.rglob(name), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise OnboardingError(f"no {name} under {source.name}: is it the downloaded result of a {kind} job?")
    return found[0]


def load_schema(path: Path, dictionary: DataDictionary) -> dict:
    """The federation's aligned schema, checked against the job's dictionary.

    Raises:
        OnboardingError: unreadable, not a schema, or made for another data dictionary.
    """
    schema = read_json(path, "aligned schema")
    if not isinstance(schema, dict) or any(k not in schema for k in _SCHEMA_KEYS):
        raise OnboardingError(f"{Path(path).name} is not an aligned schema (needs {list(_SCHEMA_KEYS)})")
    if len({len(schema["columns"]), len(schema["mean"]), len(schema["std"])}) != 1:
        raise OnboardingError(f"{Path(path).name}: 'columns', 'mean' and 'std' differ in length")
    theirs, ours = str(schema["dictionary"]), dictionary.fingerprint()
    if theirs != ours:
        raise OnboardingError(
            f"the aligned schema {Path(path).name} was made for another data dictionary than "
            f"{dictionary.name!r} version {dictionary.version} (fingerprint {theirs[:12]} vs {ours[:12]}); "
            "use the dictionary of the job that trained the model"
        )
    return schema


def site_folder(data: Path, dataset: str | None) -> tuple[Path, list[Path]]:
    """The folder holding ``mapping.json`` and the CSV files to read.

    ``data`` is that folder, the data root above it (``<data>/<dataset>/`` when the job names the
    dataset), or one CSV file whose folder holds the mapping.

    Raises:
        SiteDataError: no mapping or no CSV file (the path is not repeated: it may identify the site).
    """
    data = Path(data)
    if data.is_file():
        return data.parent, [data]
    folder = data
    if not (data / MAPPING_FILE).is_file() and dataset and (data / dataset / MAPPING_FILE).is_file():
        folder = data / dataset
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        where = f"the data folder (or its {dataset}/)" if dataset else "the data folder"
        raise SiteDataError(
            f"no CSV file in {where}: give the folder with the export CSV(s) and {MAPPING_FILE}"
        )
    return folder, files


def read_site_rows(data: Path, dictionary: DataDictionary, *, dataset: str | None = None) -> SiteRows:
    """Every CSV of the site's folder mapped onto the dictionary (concatenated), with the reports.

    Raises:
        SiteDataError: no mapping, a file that does not fit it (see
            :func:`~fedhealth.ehr.harmonize.harmonize`), or a patient id in two files.
    """
    folder, files = site_folder(data, dataset)
    mapping = SiteMapping.load(folder, label="the data folder")
    names = (C.TRAIN_FILE, C.TEST_FILE)
    labels = [
        file_label(f, kit_names=names, kit_folders=(), fallback=f"CSV file {i} of {len(files)}")
        for i, f in enumerate(files, start=1)
    ]
    raws = [read_table(f, label=label) for f, label in zip(files, labels, strict=True)]
    tables = [
        harmonize(raw, dictionary, mapping, label=label) for raw, label in zip(raws, labels, strict=True)
    ]
    if mapping.id_column is not None and len(raws) > 1:
        ids = pd.concat([raw[mapping.id_column] for raw in raws], ignore_index=True)
        repeated = int(ids.duplicated().sum())
        if repeated:
            raise SiteDataError(
                f"column {mapping.id_column!r}: {repeated} patient id(s) appear in more than one of "
                f"{', '.join(labels)}; each patient must be counted once"
            )
    columns: dict[str, str] = {}
    for raw in raws:  # every file fits the mapping (harmonize checked); the first file names a column
        used, _ = mapping.resolve(list(raw.columns), dictionary)
        for feature, spec in used.items():
            columns.setdefault(feature, spec.column)
    return SiteRows(
        features=pd.concat([t.features for t in tables], ignore_index=True),
        labels=np.concatenate([t.labels for t in tables]),
        files=labels,
        reports=[t.report for t in tables],
        columns=columns,
    )


def schema_notes(rows: SiteRows, schema: dict, dictionary: DataDictionary) -> list[str]:
    """What the federation's model does with this table that the site should know (counts only)."""
    notes = []
    n = len(rows.labels)
    native = schema.get("policy", {}).get("imputation") == "none"  # a tree job: missing stays missing
    for spec in schema["features"]:
        name = spec["name"]
        present = int(rows.features[name].notna().sum())
        if present == 0 and native:
            notes.append(
                f"feature {name!r} is not recorded here: the model takes it as missing for all {n} patients "
                "(each tree sends a missing value down its learned default branch)"
            )
        elif present == 0:
            how = "with its missingness indicator" if spec["indicator"] else "no missingness indicator"
            notes.append(
                f"feature {name!r} is not recorded here: the model gets the federation's imputed value "
                f"for all {n} patients ({how})"
            )
        if spec["kind"] == "categorical":
            kept = spec["categories"]
            others = [c for c in dictionary.feature(name).categories if c not in kept]
            count = int(rows.features[name].isin(others).sum())
            if count:
                notes.append(
                    f"feature {name!r}: {count} patient(s) in categories the model does not take "
                    f"({', '.join(others)}) count as missing"
                    + ("" if native else " (the federation's shares)")
                )
    for dropped in schema.get("dropped", []):
        name = dropped["name"]
        if name in rows.features and int(rows.features[name].notna().sum()) > 0:
            notes.append(
                f"feature {name!r} is recorded here but the model does not use it ({dropped['reason']})"
            )
    return notes


def load_model(source: Path) -> nn.Module:
    """The job's global model: a network (``FL_global_model.pt``) or a tree ensemble (``xgboost_model.json``).

    A folder is searched for the network first; a ``.json`` file, or a folder that holds only the tree
    model, gives the tree model.
    """
    source = Path(source)
    is_tree = (
        source.suffix == ".json"
        if source.is_file()
        else (source.is_dir() and not any(source.rglob(MODEL_FILE)) and any(source.rglob(TREE_MODEL_FILE)))
    )
    if not is_tree:
        return load_global_model(find_in_result(source, MODEL_FILE))
    path = find_in_result(source, TREE_MODEL_FILE)
    try:
        return TreeModel(path.read_bytes())
    except ValueError as exc:
        raise OnboardingError(f"{path.name}: {exc}") from exc


def load_tabular_inputs(
    *,
    data_dir: Path,
    model_path: Path | None = None,
    schema_path: Path | None = None,
    dictionary_path: Path | None = None,
) -> TabularInputs:
    """The model, the schema and the dictionary of a tabular job, and the site's rows encoded with them.

    A job result folder given as ``schema_path`` (or ``dictionary_path``) also supplies what is not
    given: the model (``FL_global_model.pt``, or a tree job's ``xgboost_model.json``), the schema and,
    when it holds the job's app config, the dictionary.

    Raises:
        OnboardingError: a missing or inconsistent job file; SiteDataError: a table that does not fit.
    """
    folders = [Path(p) for p in (schema_path, dictionary_path) if p is not None and Path(p).is_dir()]
    job_folder = folders[0] if folders else None
    sources = {
        "dictionary": dictionary_path or job_folder,
        "schema": schema_path or job_folder,
        "model": model_path or job_folder,
    }
    hints = {
        "dictionary": "--dictionary (its JSON file, or the job folder whose app config carries it)",
        "schema": f"--schema (the job result folder or its {C.EHR_SCHEMA_FILE})",
        "model": f"--model (the job's {MODEL_FILE} or {TREE_MODEL_FILE}) or a job result folder as --schema",
    }
    for what, source in sources.items():
        if source is None:
            raise OnboardingError(f"no {what} for a tabular job: pass {hints[what]}")
    job = load_dictionary(Path(sources["dictionary"]))  # type: ignore[arg-type]
    schema_file = find_in_result(Path(sources["schema"]), C.EHR_SCHEMA_FILE)  # type: ignore[arg-type]
    schema = load_schema(schema_file, job.dictionary)
    model = load_model(Path(sources["model"]))  # type: ignore[arg-type]
    if model.in_features != len(schema["columns"]):
        raise OnboardingError(
            f"the model expects {model.in_features} features but the aligned schema {schema_file.name} has "
            f"{len(schema['columns'])} columns; they do not come from the same job"
        )
    rows = read_site_rows(Path(data_dir), job.dictionary, dataset=job.dataset)
    x = encode(rows.features, schema)
    return TabularInputs(model, x, rows, job.dictionary, schema_notes(rows, schema, job.dictionary))
