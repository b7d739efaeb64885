"""Onboarding a hospital held out of training: the global model, fine-tuning and the decision.

The federation is trained in process on Hungary, Switzerland and VA Long Beach; Cleveland (303
patients, train and test concatenated) is the new site. Model and scaling are saved in the files
a finished FLARE heart job leaves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fedhealth.constants import SCALING_STATE_FILE
from fedhealth.data.features import feature_names
from fedhealth.data.site_data import SiteDataError, write_site
from fedhealth.models.tabular import TabularNet
from fedhealth.onboarding.artifacts import OnboardingError, split_rows
from fedhealth.onboarding.validate_site import (
    DECISION_DEPLOY,
    DECISION_DEPLOY_FINETUNED,
    DECISION_INSUFFICIENT,
    DECISION_NOT_FIT,
    format_report,
    main,
    validate_site,
)
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.training.federation import federated_scaling, run_federation

HELD_OUT = "cleveland"
FEDERATION = {"rounds": 15, "lr": 0.03, "mu": 1.0, "local_epochs": 1, "batch_size": 4}
N_BOOTSTRAP = 200
# (threshold, decision, fine-tuned?): the global model's AUC lower bound on Cleveland is 0.77,
# the fine-tuned model's 0.82 (seed 0).
DECISION_CASES = [
    (0.6, DECISION_DEPLOY, False),
    (0.8, DECISION_DEPLOY_FINETUNED, True),
    (0.95, DECISION_NOT_FIT, True),
]
# (config file contents, message)
CONFIG_CASES = [
    ({"threshold": 0.8, "epochs": 3}, "unknown setting(s) ['epochs']"),
    ({"threshold": "0.8"}, "setting 'threshold' must be a float, got str"),
    ({"threshold": 0.8, "finetune_epochs": 0}, "finetune_epochs must be at least 1, got 0"),
]
# (labels, holdout fraction, expected evaluation size)
SPLIT_CASES = [([0] * 10 + [1] * 10, 0.5, 10), ([0] * 7 + [1] * 3, 0.3, 3), ([0, 1], 0.5, 1)]


@pytest.fixture(scope="module")
def job(heart_tables: dict, heart_splits: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A three-hospital federation's result folder and the held-out hospital's data folder."""
    sites = [HeartSite(name, tr, te) for name, (tr, te) in heart_tables.items() if name != HELD_OUT]
    stats = federated_scaling(sites)
    result = run_federation(sites, lambda: TabularNet(in_features=14, seed=0), **FEDERATION)
    root = tmp_path_factory.mktemp("job")
    (root / "app_server").mkdir()
    torch.save({"model": result.model.state_dict()}, root / "app_server" / "FL_global_model.pt")
    (root / SCALING_STATE_FILE).write_text(json.dumps({**stats, "features": feature_names(True)}))
    held = heart_splits[HELD_OUT]
    data = write_site(root / "new_site", held.train, held.test).parent
    rows = pd.concat([held.train, held.test], ignore_index=True)
    return {"model": root / "app_server" / "FL_global_model.pt", "data": data, "root": root, "rows": rows}


def _run(job: dict, **kwargs: object) -> dict:
    settings = {"model_path": job["model"], "data_dir": job["data"], "n_bootstrap": N_BOOTSTRAP, **kwargs}
    return validate_site(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("threshold", "decision", "tuned"), DECISION_CASES)
def test_held_out_hospital_decision(job: dict, threshold: float, decision: str, tuned: bool) -> None:
    result = _run(job, threshold=threshold)
    assert result["decision"] == decision
    assert (result["n_total"], result["n_eval"], result["n_finetune"]) == (303, 152, 151)
    assert (result["n_eval_pos"], result["n_eval_neg"]) == (70, 82)
    assert result["global"]["value"] == pytest.approx(0.845, abs=0.01)
    assert result["global"]["lo"] < result["global"]["value"] < result["global"]["hi"]
    assert (result["fine_tuned"] is not None) is tuned
    if tuned:  # both numbers, on the same evaluation part; fine-tuning helps this hospital
        assert result["global"]["lo"] < threshold
        assert result["fine_tuned"]["value"] > result["global"]["value"] + 0.02
        assert (result["fine_tuned"]["lo"] >= threshold) is (decision == DECISION_DEPLOY_FINETUNED)
        assert result["fine_tuning"] == {"epochs": 5, "lr": 0.03, "batch_size": 4}
    else:
        assert result["global"]["lo"] >= threshold


def test_report_shows_both_numbers_and_the_decision(job: dict) -> None:
    report = format_report(_run(job, threshold=0.8))
    assert "evaluation part: 152 (70 with disease, 82 without); fine-tuning part: 151" in report
    assert "global model:     AUC 0.84" in report
    assert "fine-tuned model: AUC 0.88" in report
    assert f"decision: {DECISION_DEPLOY_FINETUNED}" in report


def test_tiny_sample_is_insufficient_data(job: dict, tmp_path: Path) -> None:
    tiny = job["rows"].sample(12, random_state=0)
    path = tmp_path / "tiny.csv"
    tiny.to_csv(path, index=False)
    result = _run(job, data_dir=path, threshold=0.8)
    assert result["decision"] == DECISION_INSUFFICIENT
    assert result["fine_tuned"] is None
    assert (result["n_eval"], result["n_eval_pos"], result["n_eval_neg"]) == (6, 1, 5)
    assert result["global"]["value"] == 1.0  # a perfect score on six patients proves nothing
    assert "fewer than 10 patients of a class" in result["reason"]
    assert "about 57 evaluation patients" in result["reason"]
    assert "about 114 labelled patients in all at holdout fraction 0.5" in result["reason"]


@pytest.mark.parametrize(("labels", "fraction", "n_eval"), SPLIT_CASES)
def test_split_keeps_evaluation_apart(labels: list[int], fraction: float, n_eval: int) -> None:
    tune, held = split_rows(np.asarray(labels, dtype="float32"), holdout_fraction=fraction, seed=0)
    assert len(held) == n_eval
    assert set(tune).isdisjoint(held)
    assert sorted([*tune, *held]) == list(range(len(labels)))


def test_wrong_feature_count_is_a_clear_error(job: dict, tmp_path: Path) -> None:
    stats = json.loads((job["root"] / SCALING_STATE_FILE).read_text())
    scaling = tmp_path / "scaling13.json"
    names = feature_names(False)
    scaling.write_text(json.dumps({"mean": stats["mean"][:13], "std": stats["std"][:13], "features": names}))
    with pytest.raises(
        ValueError, match="the model expects 14 features but scaling file scaling13.json has 13"
    ):
        _run(job, threshold=0.8, scaling_path=scaling)


def test_missing_scaling_says_how_to_pass_it(job: dict, tmp_path: Path) -> None:
    model = tmp_path / "FL_global_model.pt"
    model.write_bytes(job["model"].read_bytes())
    with pytest.raises(OnboardingError, match="no fedhealth_scaling.json .* pass .* with --scaling"):
        _run(job, model_path=model, threshold=0.8)


def test_missing_column_names_file_and_column(job: dict, tmp_path: Path) -> None:
    write_site(tmp_path, job["rows"].drop(columns="chol"), job["rows"])
    with pytest.raises(SiteDataError, match="heart_disease/train.csv has no column 'chol'"):
        _run(job, data_dir=tmp_path, threshold=0.8)


def test_cli_writes_json_and_returns_zero(job: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "onboarding.json"
    config.write_text(json.dumps({"threshold": 0.8, "finetune_epochs": 3}))
    out = tmp_path / "out" / "result.json"
    argv = ["--model", str(job["model"]), "--data", str(job["data"]), "--config", str(config)]
    assert main([*argv, "--out", str(out), "--save-model", str(tmp_path / "tuned.pt")]) == 0
    result = json.loads(out.read_text())
    assert result["decision"] in (DECISION_DEPLOY_FINETUNED, DECISION_NOT_FIT)
    assert result["fine_tuning"]["epochs"] == 3
    assert result["global"]["value"] is not None and result["fine_tuned"]["value"] is not None
    assert set(torch.load(tmp_path / "tuned.pt", weights_only=True)["model"]) == {"net.weight", "net.bias"}
    assert f"decision: {result['decision']}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--model", "missing.pt", "--threshold", "0.8"],
            "validate-site: model file missing.pt does not exist",
        ),
        (["--threshold", "1.2"], r"threshold must be in (0, 1), got 1.2"),
        ([], "no threshold: pass --threshold or set 'threshold' in --config"),
    ],
)
def test_cli_bad_input_returns_two(
    job: dict, extra: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--model", str(job["model"]), "--data", str(job["data"]), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("config", "message"), CONFIG_CASES)
def test_cli_bad_config_returns_two(
    job: dict, tmp_path: Path, config: dict, message: str, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "onboarding.json"
    path.write_text(json.dumps(config))
    assert main(["--model", str(job["model"]), "--data", str(job["data"]), "--config", str(path)]) == 2
    assert message in capsys.readouterr().err
