"""validate-site for a tabular job: the job's dictionary and aligned schema, the new site's own export.

The federation (:mod:`ehr_job`): three synthetic hospitals profiled, aligned (HbA1c dropped: one
site records it; BNP kept with an indicator) and a TabularNet trained on their encoded rows. The new
hospital exports other column names, cholesterol in mmol/L, text codes and a yes/no outcome, and
does not record BNP.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ehr_job import DICTIONARY, MAPPING, federation, write_job, write_result, write_site

from fedhealth import constants as C
from fedhealth.models.tabular import TabularNet
from fedhealth.onboarding.artifacts import OnboardingError
from fedhealth.onboarding.validate_site import (
    DECISION_DEPLOY,
    DECISION_DEPLOY_FINETUNED,
    DECISION_INSUFFICIENT,
    DECISION_NOT_FIT,
    format_report,
    main,
    validate_site,
)

N_BOOTSTRAP = 200
# (site, threshold, decision, global AUC, fine-tuned AUC or None); the shifted hospital's outcome
# follows sex and age the other way round: the global model ranks it worse than chance.
DECISION_CASES = [
    ("site", 0.6, DECISION_DEPLOY, 0.827, None),
    ("site", 0.8, DECISION_NOT_FIT, 0.827, 0.828),
    ("shifted", 0.7, DECISION_DEPLOY_FINETUNED, 0.347, 0.865),
    ("tiny", 0.8, DECISION_INSUFFICIENT, 0.95, None),
]
REPORT_LINES = [
    "site data: 300 labelled patients from test.csv, train.csv",
    "  test.csv: 100 row(s)",
    "  train.csv: 200 row(s)",
    "  ignored columns (not in the dictionary): ward, remarks",
    "  features this table does not record: bnp",
    "  column 'age_years': 1 non numeric value(s) in line(s) 2",
    "  column 'chol_mmol': 2 out of range value(s) (outside 80..700 mg/dL) in line(s) 5, 9",
    "  column 'smoking': 1 unknown code value(s) (not a category or code of the dictionary) in line(s) 7",
    "  note: feature 'bnp' is not recorded here: the model gets the federation's imputed value for all "
    "300 patients (with its missingness indicator)",
    "  note: feature 'hba1c' is recorded here but the model does not use it (recorded at 1 of 3 sites "
    "(min_sites_with_feature 2))",
    "  evaluation part: 150 (75 with event, 75 without); fine-tuning part: 150 (never reported on)",
    "global model:     AUC 0.827 (95% CI 0.758 to 0.889)",
    f"decision: {DECISION_DEPLOY}",
]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A downloaded job result (model, ehr_schema.json, the job's app config) and three new sites."""
    root = tmp_path_factory.mktemp("tabular_job")
    schema, model = federation()
    return {
        "result": write_result(root / "result", schema, model),
        "site": write_site(root / "site", 300),
        "shifted": write_site(root / "shifted", 300, seed=8, shifted=True, flaws=False),
        "tiny": write_site(root / "tiny", 18, seed=9, flaws=False),
    }


def _run(job: dict, site: str = "site", **kwargs: object) -> dict:
    settings = {"model_path": None, "data_dir": job[site], "schema_path": job["result"], **kwargs}
    return validate_site(n_bootstrap=N_BOOTSTRAP, **settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("site", "threshold", "decision", "auc", "tuned"), DECISION_CASES)
def test_decision_on_the_sites_own_export(
    job: dict, site: str, threshold: float, decision: str, auc: float, tuned: float | None
) -> None:
    result = _run(job, site, threshold=threshold)
    assert result["decision"] == decision
    assert result["global"]["value"] == pytest.approx(auc, abs=0.001)
    assert (result["fine_tuned"] is None) is (tuned is None)
    if tuned is not None:
        assert result["fine_tuned"]["value"] == pytest.approx(tuned, abs=0.001)
    assert result["outcome"] == "event"


def test_report_lists_the_data_report_notes_and_decision(job: dict) -> None:
    report = format_report(_run(job, threshold=0.6)).splitlines()
    for line in REPORT_LINES:
        assert line in report
    # the data report comes before the evaluation split and the metric
    assert report.index(REPORT_LINES[1]) < report.index(REPORT_LINES[-3])


def test_explicit_files_give_the_same_result(job: dict, tmp_path: Path) -> None:
    dictionary = tmp_path / "dictionary.json"
    dictionary.write_text(json.dumps(DICTIONARY))
    workspace = job["result"] / "workspace"
    result = _run(
        job,
        threshold=0.6,
        model_path=workspace / "app_server" / "FL_global_model.pt",
        schema_path=workspace / C.EHR_SCHEMA_FILE,
        dictionary_path=dictionary,
    )
    assert result["global"] == _run(job, threshold=0.6)["global"]


def test_data_root_with_the_jobs_dataset_folder(job: dict, tmp_path: Path) -> None:
    """``--data <data_root>`` finds ``<data_root>/toy_cardio/`` (the dataset the job's config names)."""
    write_site(tmp_path / "toy_cardio", 300)
    result = _run(job, data_dir=tmp_path, threshold=0.6)
    assert (result["n_total"], result["decision"]) == (300, DECISION_DEPLOY)


def test_cli_writes_json_and_returns_zero(job: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "result.json"
    argv = ["--schema", str(job["result"]), "--data", str(job["shifted"]), "--threshold", "0.7"]
    assert main([*argv, "--out", str(out), "--save-model", str(tmp_path / "tuned.pt")]) == 0
    result = json.loads(out.read_text())
    assert result["decision"] == DECISION_DEPLOY_FINETUNED
    assert result["data_report"][1:3] == [
        "ignored columns (not in the dictionary): ward, remarks",
        "features this table does not record: bnp",
    ]
    assert torch.load(tmp_path / "tuned.pt", weights_only=True)["model"]["net.weight"].shape == (1, 7)
    printed = capsys.readouterr().out
    assert f"decision: {DECISION_DEPLOY_FINETUNED}" in printed
    # the command's 1000 bootstrap resamples (the other tests use 200)
    assert "fine-tuned model: AUC 0.865 (95% CI 0.801 to 0.917)  [5 epochs, lr 0.03, batch 4]" in printed


def _other_dictionary(tmp_path: Path) -> Path:
    path = tmp_path / "dictionary_v2.json"
    path.write_text(json.dumps({**DICTIONARY, "version": 2}))
    return path


def _bad_mapping(tmp_path: Path) -> Path:
    mapping = {**MAPPING, "columns": {**MAPPING["columns"], "chol_mmol": {"feature": "chol", "unit": "kg"}}}
    return write_site(tmp_path / "bad_unit", 30, mapping=mapping)


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (
            _other_dictionary,
            ["--dictionary"],
            "validate-site: the aligned schema ehr_schema.json was made for another data dictionary than "
            "'toy_cardio' version 2",
        ),
        (
            _bad_mapping,
            ["--data"],
            "validate-site: test.csv, column 'chol_mmol': feature 'chol': unit 'kg' does not convert "
            "to 'mg/dL'",
        ),
        (
            lambda tmp: write_site(tmp / "x", 30).joinpath("mapping.json").unlink() or tmp / "x",
            ["--data"],
            "validate-site: the data folder: no mapping.json (the site's mapping of its table) at this site",
        ),
        (
            lambda tmp: write_job(tmp / "definition"),  # a job as submitted: no model, no schema
            ["--schema"],
            "validate-site: no ehr_schema.json under definition: is it the downloaded result of a "
            "tabular job?",
        ),
    ],
)
def test_cli_bad_input_returns_two(
    job: dict, tmp_path: Path, make, extra: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    argv = {"--schema": str(job["result"]), "--data": str(job["site"]), "--threshold": "0.6"}
    argv[extra[0]] = str(make(tmp_path))
    assert main([x for pair in argv.items() for x in pair]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_scaling_with_a_schema_is_refused(job: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--scaling is a heart job's global scaling"):
        _run(job, scaling_path=tmp_path / "fedhealth_scaling.json", threshold=0.6)


def test_schema_file_without_a_dictionary_says_what_to_pass(job: dict) -> None:
    schema = job["result"] / "workspace" / C.EHR_SCHEMA_FILE
    with pytest.raises(OnboardingError, match="no dictionary for a tabular job: pass --dictionary"):
        _run(job, schema_path=schema, threshold=0.6)


def test_model_of_another_schema_is_a_clear_error(job: dict, tmp_path: Path) -> None:
    model = tmp_path / "FL_global_model.pt"
    torch.save({"model": TabularNet(in_features=5).state_dict()}, model)
    with pytest.raises(
        OnboardingError, match="the model expects 5 features but the aligned schema ehr_schema.json"
    ):
        _run(job, model_path=model, threshold=0.6)


def test_patient_in_two_files_is_an_error(job: dict, tmp_path: Path) -> None:
    folder = write_site(tmp_path / "twice", 30, flaws=False)
    (folder / "test.csv").write_text((folder / "train.csv").read_text())
    with pytest.raises(
        ValueError, match=r"column 'patient_id': 20 patient id\(s\) appear in more than one of"
    ):
        _run(job, data_dir=folder, threshold=0.6)


def test_heart_path_without_a_model_says_so(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["--data", str(tmp_path), "--threshold", "0.8"]) == 2
    assert "validate-site: no model: pass --model (the job's FL_global_model.pt)" in capsys.readouterr().err


def test_model_of_a_tabular_job_without_schema_points_to_it(job: dict, capsys: pytest.CaptureFixture) -> None:
    model = job["result"] / "workspace" / "app_server" / "FL_global_model.pt"
    assert main(["--model", str(model), "--data", str(job["site"]), "--threshold", "0.6"]) == 2
    assert (
        "this job aligned its features (ehr_schema.json is next to the model): pass --schema "
        "<the downloaded job result folder>"
    ) in capsys.readouterr().err
