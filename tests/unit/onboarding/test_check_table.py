"""check-table: a new hospital reads and harmonizes its export before joining; no model needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ehr_job import DICTIONARY, FEDERATION, patients, write_job, write_site

from fedhealth import constants as C
from fedhealth.ehr.alignment import AlignmentPolicy, align
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.ehr.profile import site_profile
from fedhealth.onboarding.check_table import check_table, main

# What check-table prints for the flawed 300-patient export (train.csv holds the flaws).
FLAWED_LINES = [
    "check-table: data dictionary 'toy_cardio' version 1 (6 features, target 'event')",
    "test.csv: 100 row(s)",
    "ignored columns (not in the dictionary): ward, remarks",
    "features this table does not record: bnp",
    "train.csv: 200 row(s)",
    "ignored columns (not in the dictionary): ward, remarks",
    "features this table does not record: bnp",
    "column 'age_years': 1 non numeric value(s) in line(s) 2",
    "column 'chol_mmol': 2 out of range value(s) (outside 80..700 mg/dL) in line(s) 5, 9",
    "column 'smoking': 1 unknown code value(s) (not a category or code of the dictionary) in line(s) 7",
    "labelled patients: 300 (151 positive, 149 negative)",
    "feature  kind         column     present  missing",
    "age      numeric      age_years      299        1",
    "sex      binary       gender         300        0",
    "chol     numeric      chol_mmol      298        2",
    "smoker   categorical  smoking        299        1",
    "bnp      numeric      -                0      300",
    "hba1c    numeric      hba1c          300        0",
    "result: 4 value(s) could not be used and count as missing (see the lines above)",
]
# (the dictionary's features, message): the table cannot be used at all
FATAL_CASES = [
    (
        [
            {**f, "required": True} if f["name"] == "bnp" else f
            for f in DICTIONARY["features"]  # type: ignore[union-attr]
        ],
        "check-table: test.csv: required feature(s) ['bnp'] have no column in this table",
    ),
    (
        [f for f in DICTIONARY["features"] if f["name"] != "chol"],  # type: ignore[union-attr]
        "check-table: test.csv: column 'chol_mmol' maps to 'chol', which the dictionary lacks",
    ),
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("check_table")
    dictionary = root / "dictionary.json"
    dictionary.write_text(json.dumps(DICTIONARY))
    return {
        "dictionary": dictionary,
        "flawed": write_site(root / "flawed", 300),
        "clean": write_site(root / "clean", 60, seed=3, flaws=False),
    }


def test_flawed_export_prints_report_and_counts_and_returns_one(
    folders: dict, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--dictionary", str(folders["dictionary"]), "--data", str(folders["flawed"])]
    assert main(argv) == 1
    assert capsys.readouterr().out.splitlines() == FLAWED_LINES


def test_clean_export_returns_zero(folders: dict) -> None:
    lines, code = check_table(dictionary_path=folders["dictionary"], data_dir=folders["clean"])
    assert code == 0
    assert lines[-1] == "result: every recorded value could be used"
    assert "chol     numeric      chol_mmol       60        0" in lines  # mmol/L converted into range


def test_dictionary_from_the_jobs_app_config(folders: dict, tmp_path: Path) -> None:
    job = write_job(tmp_path / "job")
    lines, code = check_table(dictionary_path=job, data_dir=folders["flawed"])
    assert (lines, code) == (FLAWED_LINES, 1)


def _schema(tmp_path: Path, dictionary: dict = DICTIONARY, **policy: object) -> Path:
    data = DataDictionary.from_dict(dictionary)
    profiles = {}
    for i, (site, (n, absent)) in enumerate(FEDERATION.items()):
        features, _ = patients(n, seed=i)
        features.loc[:, sorted(absent)] = float("nan")
        profiles[site] = site_profile(features, data, min_cell=5)
    path = tmp_path / C.EHR_SCHEMA_FILE
    path.write_text(json.dumps(align(profiles, data, AlignmentPolicy(**policy))))  # type: ignore[arg-type]
    return path


def test_with_a_schema_says_what_the_model_does_with_the_table(folders: dict, tmp_path: Path) -> None:
    """``min_cell`` 120: 'current' (about 100 smokers over the federation) is no model category."""
    schema = _schema(tmp_path, min_cell=120)
    lines, _ = check_table(
        dictionary_path=folders["dictionary"], data_dir=folders["flawed"], schema_path=tmp_path
    )
    assert "feature  kind         column     present  missing  model" in lines
    assert "smoker   categorical  smoking        299        1  kept" in lines
    assert "hba1c    numeric      hba1c          300        0  dropped" in lines
    assert (
        "feature 'bnp' is not recorded here: the model gets the federation's imputed value for all 300 "
        "patients (with its missingness indicator)"
    ) in lines
    current = int((patients(300, seed=7)[0]["smoker"] == "current").sum())
    assert (
        f"feature 'smoker': {current} patient(s) in categories the model does not take (current) count "
        "as missing (the federation's shares)"
    ) in lines
    assert json.loads(schema.read_text())["features"][3]["categories"] == ["never", "former"]


def test_schema_of_another_dictionary_returns_two(
    folders: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _schema(tmp_path, {**DICTIONARY, "name": "other_cardio"})
    argv = [
        "--dictionary",
        str(folders["dictionary"]),
        "--data",
        str(folders["clean"]),
        "--schema",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert (
        "check-table: the aligned schema ehr_schema.json was made for another data dictionary than "
        "'toy_cardio' version 1"
    ) in capsys.readouterr().err


@pytest.mark.parametrize(("changed", "message"), FATAL_CASES)
def test_table_that_cannot_be_used_returns_two(
    folders: dict, tmp_path: Path, changed: list, message: str, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "dictionary.json"
    path.write_text(json.dumps({**DICTIONARY, "features": changed}))
    code = main(["--dictionary", str(path), "--data", str(folders["clean"])])
    err = capsys.readouterr().err
    assert (code, message in err, "Traceback" in err) == (2, True, False), err


def test_fedhealth_site_runs_check_table(folders: dict, capsys: pytest.CaptureFixture) -> None:
    from fedhealth.onboarding.cli import main as site_main

    argv = ["check-table", "--dictionary", str(folders["dictionary"]), "--data", str(folders["clean"])]
    assert site_main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "result: every recorded value could be used"
