"""The ``tabular`` task over real site folders: job arguments, profile, schema, restart, model width, privacy.

(Named ``test_tabular_task.py``: ``tests/unit/models/test_tabular.py`` owns the plain module name.)
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
from ehr_cases import DICTIONARY, HEADER, MAPPING, site_rows, write_csv, write_site_folder

from fedhealth import constants as C
from fedhealth.data.messages import SiteDataError
from fedhealth.ehr.alignment import AlignmentPolicy, align
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.registry import build_task
from fedhealth.tasks.tabular import TabularSite, TabularTask

DATASET = "heart_mini"
TASK_ARGS = {"dictionary": DICTIONARY, "dataset": DATASET}
# site_rows draws no non_anginal patient: the category is dropped
COLUMNS = ["age", "sex", "cp=atypical_angina", "cp=asymptomatic", "chol", "chol_missing"]
# (case, task_args, the exact error)
BAD_ARGS = [
    (
        "unknown argument",
        {**TASK_ARGS, "min_cell": 5},
        "task 'tabular' has no argument 'min_cell'; it takes: dictionary, dataset.",
    ),
    (
        "dataset with a slash",
        {**TASK_ARGS, "dataset": "heart/../../etc"},
        "dataset must be a plain folder name (letters, digits, '_', '-', '.'), not 'heart/../../etc'.",
    ),
    (
        "dataset hidden",
        {**TASK_ARGS, "dataset": ".heart"},
        "dataset must be a plain folder name (letters, digits, '_', '-', '.'), not '.heart'.",
    ),
    (
        "dictionary without features",
        {**TASK_ARGS, "dictionary": {**DICTIONARY, "features": []}},
        "the data dictionary needs a non-empty 'features' list",
    ),
]
# (site setting min_cell_count, the job's min_cell, the floor the profile uses)
FLOORS = [(None, 5, 5), (None, 8, 8), (10, 5, 10), (10, 20, 20)]
FLOOR_ERROR = f"local/{C.SITE_CONFIG_FILE}: '{C.SITE_MIN_CELL_KEY}' must be a whole number >= 1"


def _task() -> TabularTask:
    return build_task("tabular", copy.deepcopy(TASK_ARGS))  # type: ignore[return-value]


def _site_root(
    tmp_path: Path, name: str, seed: int, *, chol: bool = True, mapping: dict | None = None
) -> Path:
    root = tmp_path / name
    write_site_folder(
        root / "data" / DATASET,
        site_rows(40, seed, chol=chol, first_id=1000 * seed),
        site_rows(20, seed + 50, chol=chol, first_id=1000 * seed + 500),
        mapping,
    )
    return root


def _context(root: Path, run_dir: Path | None = None, **settings: object) -> SiteContext:
    return SiteContext(name=root.name, site_root=root, settings=settings, run_dir=run_dir)


def _federation(tmp_path: Path) -> tuple[TabularTask, dict[str, TabularSite], dict]:
    """Three sites loaded from their folders (site-3 never measures chol) and the schema aligned from them."""
    task = _task()
    sites = {
        name: task.load_site(
            _context(_site_root(tmp_path, name, seed, chol=seed != 3), tmp_path / "run" / name)
        )
        for seed, name in enumerate(("site-1", "site-2", "site-3"), start=1)
    }
    profiles = {name: site.extra_tasks()[C.TASK_EHR_PROFILE]({"min_cell": 5}) for name, site in sites.items()}
    schema = align(profiles, task.data_dictionary, AlignmentPolicy())
    return task, sites, schema


@pytest.mark.parametrize(("case", "args", "message"), BAD_ARGS, ids=[b[0] for b in BAD_ARGS])
def test_bad_task_args_are_refused(case: str, args: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        build_task("tabular", args)
    assert str(err.value) == message


def test_the_task_is_built_from_its_job_arguments() -> None:
    task = _task()
    assert isinstance(task, TabularTask) and task.name == "tabular"
    assert task.steps == (C.TASK_EHR_PROFILE, C.TASK_SET_SCHEMA, C.TASK_SUBMIT_TREE)
    assert task.data_dictionary.names == ["age", "sex", "cp", "chol"]


def test_a_site_profiles_then_takes_the_schema_and_trains_on_it(tmp_path: Path) -> None:
    task, sites, schema = _federation(tmp_path)
    site = sites["site-3"]
    assert (site.n_train, site.sizes()) == (40, {C.M_N_TRAIN: 40, C.M_N_TEST: 20})
    assert schema["columns"] == COLUMNS
    assert site.extra_tasks()[C.TASK_SET_SCHEMA](schema) is None
    assert site.n_features == 6
    x, y = site.arrays("train")
    assert x.shape == (40, 6) and y.shape == (40,)
    assert (
        abs(x[:, COLUMNS.index("chol")]).max() < 1e-6
    )  # chol imputed with the federation's mean: 0 after scaling
    assert site.arrays("test")[0].shape == (20, 6)
    model = task.build_model(site)
    metrics = site.evaluate(model, "test")
    assert metrics[C.M_N_TEST] == 20.0 and 0.0 <= metrics[C.M_AUC] <= 1.0
    saved = json.loads((tmp_path / "run" / "site-3" / C.EHR_SCHEMA_FILE).read_text())
    assert saved == schema
    validated = site.validate(model, n_bootstrap=20)  # names the dictionary's target as positive
    assert validated[C.M_POSITIVE_CLASS] == "heart_disease = 1" and validated[C.M_INTERVALS]["n"] == 20


def test_training_before_the_schema_says_what_is_missing(tmp_path: Path) -> None:
    site = _task().load_site(_context(_site_root(tmp_path, "site-1", 1)))
    with pytest.raises(RuntimeError) as err:
        site.arrays("train")
    assert str(err.value) == (
        f"site site-1 has no aligned schema yet: the job must run the alignment workflow "
        f"({C.TASK_EHR_PROFILE}, {C.TASK_SET_SCHEMA}) before training, and this site must take part"
    )


def test_a_restarted_site_restores_the_schema_from_its_run_folder(tmp_path: Path) -> None:
    task, sites, schema = _federation(tmp_path)
    sites["site-1"].set_schema(schema)
    before = sites["site-1"].arrays("train")[0]
    again = task.load_site(_context(tmp_path / "site-1", tmp_path / "run" / "site-1"))
    assert again.schema == schema and again.n_features == len(schema["columns"])
    assert (again.arrays("train")[0] == before).all()


def test_a_schema_of_another_dictionary_is_refused(tmp_path: Path) -> None:
    _, sites, schema = _federation(tmp_path)
    with pytest.raises(ValueError) as err:
        sites["site-1"].set_schema({**schema, "dictionary": "0" * 64})
    assert str(err.value) == "the aligned schema was made for another data dictionary than this job's"


def test_model_weights_of_another_width_are_refused(tmp_path: Path) -> None:
    task, sites, schema = _federation(tmp_path)
    site = sites["site-2"]
    site.set_schema(schema)
    weights = {k: v.numpy() for k, v in task.build_model(site).state_dict().items()}
    assert task.model_from_weights(weights, site).in_features == 6
    narrow = {k: v[:, :5] if v.ndim == 2 else v for k, v in weights.items()}
    with pytest.raises(ValueError) as err:
        task.model_from_weights(narrow, site)
    assert str(err.value) == (
        "site site-2: the model takes 5 features but the aligned schema has 6; "
        "the job's model and its alignment disagree"
    )


@pytest.mark.parametrize(("setting", "asked", "floor"), FLOORS)
def test_the_sites_own_min_cell_count_only_raises_the_jobs_floor(
    tmp_path: Path, setting: int | None, asked: int, floor: int
) -> None:
    settings = {} if setting is None else {C.SITE_MIN_CELL_KEY: setting}
    site = _task().load_site(_context(_site_root(tmp_path, "site-1", 1), **settings))
    profile = site.extra_tasks()[C.TASK_EHR_PROFILE]({"min_cell": asked})
    assert profile["min_cell"] == floor
    counts = [c for e in profile["features"].values() for c in e.get("categories", {}).values()]
    assert not [c for c in counts if c is not None and 0 < c < floor]


@pytest.mark.parametrize("setting", [0, "10", True, 2.5])
def test_a_bad_min_cell_count_setting_is_named(tmp_path: Path, setting: object) -> None:
    with pytest.raises(SiteDataError) as err:
        _task().load_site(_context(_site_root(tmp_path, "site-1", 1), **{C.SITE_MIN_CELL_KEY: setting}))
    assert str(err.value) == FLOOR_ERROR


def test_a_site_with_fewer_patients_than_its_floor_declines_to_profile(tmp_path: Path) -> None:
    site = _task().load_site(_context(_site_root(tmp_path, "site-1", 1), **{C.SITE_MIN_CELL_KEY: 50}))
    with pytest.raises(ValueError) as err:
        site.extra_tasks()[C.TASK_EHR_PROFILE]({"min_cell": 5})
    assert (
        str(err.value) == "this site has 40 training row(s), fewer than the smallest cell it may release (50)"
    )


def test_a_site_without_its_files_says_which(tmp_path: Path) -> None:
    root = _site_root(tmp_path, "site-1", 1)
    folder = root / "data" / DATASET
    (folder / "test.csv").unlink()
    with pytest.raises(SiteDataError) as err:
        _task().load_site(_context(root))
    assert str(err.value) == f"{DATASET}/test.csv is missing at this site"
    (folder / "mapping.json").unlink()
    with pytest.raises(SiteDataError) as err:
        _task().load_site(_context(root))
    assert str(err.value) == f"{DATASET}: no mapping.json (the site's mapping of its table) at this site"


def test_a_site_lacking_a_required_column_declines(tmp_path: Path) -> None:
    root = _site_root(tmp_path, "site-1", 1)
    rows = [[r[0], *r[2:]] for r in site_rows(10, 1)]
    write_csv(root / "data" / DATASET / "train.csv", [c for c in HEADER if c != "age"], rows)
    with pytest.raises(SiteDataError) as err:
        _task().load_site(_context(root))
    assert str(err.value) == f"{DATASET}/train.csv: required feature(s) ['age'] have no column in this table"


def test_no_planted_value_or_file_name_leaves_the_site(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file name, an id, an implausible age and an odd spelling stay out of logs, errors and the profile."""
    planted = ["Doe_Jane", "MRN-55555", "987654", "Zz-Angina-Qx", "Gwynedd"]
    mapping = {**MAPPING, "train": "Doe_Jane_export.csv", "columns": {"town": None}}
    root = _site_root(tmp_path, "site-1", 1, mapping=mapping)
    folder = root / "data" / DATASET
    rows = site_rows(40, 1)
    rows[0][0], rows[1][1], rows[2][3] = "MRN-55555", 987654, "Zz-Angina-Qx"
    write_csv(folder / "Doe_Jane_export.csv", [*HEADER, "town"], [[*r, "Gwynedd"] for r in rows])
    with caplog.at_level(logging.INFO, logger="fedhealth.tasks.tabular"):
        site = _task().load_site(_context(root))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"site site-1: {DATASET}/train.csv: 40 row(s)" in logged
    assert "ignored columns (not in the dictionary): town" in logged
    assert "column 'age': 1 out of range value(s) (outside 18..100 year) in line(s) 3" in logged
    profile = json.dumps(site.extra_tasks()[C.TASK_EHR_PROFILE]({"min_cell": 5}))
    assert json.loads(profile)["problems"] == {"out_of_range": None, "unknown_code": None}
    rows[5][0] = "MRN-55555"
    write_csv(folder / "Doe_Jane_export.csv", [*HEADER, "town"], [[*r, "Gwynedd"] for r in rows])
    with pytest.raises(SiteDataError) as err:
        _task().load_site(_context(root))
    assert (
        str(err.value) == f"{DATASET}/train.csv, column 'patient_id': duplicate patient ids in line(s) 2, 7"
    )
    leaked = [p for p in planted if p in logged or p in profile or p in str(err.value)]
    assert leaked == []
