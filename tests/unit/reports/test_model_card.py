"""The model card of a real run (``data/heart_fedprox_result``, four hospitals, 19 rounds) and of
variants of its report with the limits and privacy settings a card must carry."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from fedhealth.models.export import GLOBAL_MODEL_FILE
from fedhealth.models.tabular import TabularNet
from fedhealth.reports.job_result import read_job_result, report_job_result
from fedhealth.reports.model_card import (
    MODEL_CARD_JSON,
    MODEL_CARD_MD,
    SHARED_LIMITS,
    build_model_card,
    model_card_markdown,
)
from fedhealth.reports.run_report import build_report
from fedhealth_tools.cli import main

RESULT = Path(__file__).parent / "data" / "heart_fedprox_result"
SECTIONS = [
    "# Model card: heart_fedprox",
    "## Intended use",
    "## Model",
    "## Data and sites",
    "## Performance per site",
    "## Deployment gate",
    "## Privacy settings",
    "## Known limits",
]


@pytest.fixture(scope="module")
def report() -> dict:
    result = read_job_result(RESULT)
    return build_report(result.job, result.record, result.cross, audit=None)


def test_card_of_a_real_run_has_every_section_and_its_numbers(report: dict) -> None:
    card = build_model_card(report)
    text = model_card_markdown(card)

    positions = [text.index(heading) for heading in SECTIONS]
    assert positions == sorted(positions)
    assert "Job 995e77bd-ab92-49d2-9b14-5f9800c78cc4, 19 rounds, status finished" in text
    assert "angiographic narrowing" in text and "not a medical device" in text
    assert "| cleveland | 199 | 104 | 48 | 56 | 100% |" in text
    assert "| switzerland | 30 | 16 | 15 | 1 | 100% |" in text
    assert "| cleveland | 0.769 [0.683, 0.846] | 0.859 [0.780, 0.928] | 0.708 [0.575, 0.843] |" in text
    assert "**DO NOT DEPLOY**: auc lower 95% bound >= 0.75 at every site; deciding site switzerland." in text
    assert "- hungary: DEPLOY (the 95% lower bound 0.788 of auc clears the threshold 0.75)" in text
    assert "- none: site updates reach the server in clear (TLS in transit)" in text
    assert card["limits"][0].startswith("switzerland: too few patients of a class")
    assert card["limits"][1:] == list(SHARED_LIMITS)
    assert card["sites"][0]["metrics"]["auc"]["lo"] == pytest.approx(0.7800204087674303)
    assert json.loads(json.dumps(card)) == card


def test_limits_name_withheld_metrics_flags_rejections_and_missed_rounds(report: dict) -> None:
    variant = copy.deepcopy(report)
    hungary = next(s for s in variant["sites"] if s["name"] == "hungary")
    hungary["metrics"]["auc"] = {"value": None, "lo": None, "hi": None, "reason": "small cell (n < 11)"}
    hungary["flagged"] = True
    variant["flags"] = {"k": 2.0}
    variant["rejected_updates"] = [{"round": 7, "site": "cleveland", "reason": "update norm 41.0 > 10.0"}]
    variant["participation"]["va_long_beach"].update(missed_rounds=[3, 4], rate=17 / 19)
    card = build_model_card(variant)
    text = model_card_markdown(card)

    assert card["limits"][:4] == [
        "hungary: metrics withheld by the site (auc)",
        "hungary: flagged by the run report (more than 2 SDs below the sites' mean)",
        "switzerland: too few patients of a class for the gate to clear it (only 1 negative patient(s) in "
        "the site's test split; the auc interval needs at least 10 of each class it depends on to be "
        "trusted, so the site cannot be cleared)",
        "cleveland: update of round 7 rejected (update norm 41.0 > 10.0)",
    ]
    assert card["limits"][4] == "va_long_beach: missed rounds [3, 4] (participation 89%)"
    assert "| hungary | 0.775 [0.697, 0.854] | withheld (small cell (n < 11)) |" in text


def test_privacy_settings_carry_the_dp_ledger_and_components(report: dict) -> None:
    variant = copy.deepcopy(report)
    ledger = {"epsilon": 2.91, "delta": 1e-5, "noise_multiplier": 1.1, "max_grad_norm": 1.0}
    variant["privacy"] = {"final": {"cleveland": ledger}}
    server = {"workflows": [{"id": "sa", "path": "fedhealth.workflows.secagg_controller.SecAggController"}]}
    client = {"task_result_filters": [{"tasks": ["train"], "filters": [{"path": "fedhealth.filters.x.Y"}]}]}
    card = build_model_card(variant, client_config=client, server_config=server)

    assert card["privacy"]["mechanisms"] == [
        "DP-SGD at each site (per-site (ε, δ) ledger)",
        "secure aggregation",
    ]
    assert card["privacy"]["components"] == [
        "fedhealth.filters.x.Y",
        "fedhealth.workflows.secagg_controller.SecAggController",
    ]
    text = model_card_markdown(card)
    assert "- DP-SGD, final per site: cleveland: epsilon 2.91, delta 1e-05, noise_multiplier 1.1" in text


def test_report_writes_the_card_next_to_the_report(tmp_path: Path) -> None:
    _, paths = report_job_result(RESULT, tmp_path)
    assert tmp_path / MODEL_CARD_MD in paths and tmp_path / MODEL_CARD_JSON in paths
    assert json.loads((tmp_path / MODEL_CARD_JSON).read_text())["gate"]["decision"] == "DO NOT DEPLOY"


def test_export_model_command_exports_and_names_the_files_in_the_card(tmp_path: Path, capsys) -> None:
    result = tmp_path / "result"
    shutil.copytree(RESULT, result)
    model = TabularNet(in_features=10, arch="mlp")
    torch.save({"model": model.state_dict()}, result / "workspace" / GLOBAL_MODEL_FILE)

    assert main(["export-model", str(result), "--out", str(tmp_path / "out"), "--samples", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("parity on 20 seeded standard-normal rows")
    card = json.loads((tmp_path / "out" / MODEL_CARD_JSON).read_text())
    assert card["model"]["export"]["samples"] == 20 and card["model"]["export"]["onnx_max_abs_diff"] <= 1e-5
    assert (
        "Exported: `model.torchscript.pt` (TorchScript), `model.onnx` (ONNX)"
        in (tmp_path / "out" / MODEL_CARD_MD).read_text()
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "export.json",
        "model.onnx",
        "model.torchscript.pt",
        MODEL_CARD_JSON,
        MODEL_CARD_MD,
    ]


def test_export_model_command_without_a_model_says_so(tmp_path: Path, capsys) -> None:
    assert main(["export-model", str(RESULT), "--out", str(tmp_path)]) == 1
    assert f"fedhealth export-model failed: {RESULT}: no {GLOBAL_MODEL_FILE}" in capsys.readouterr().err


def test_card_of_a_tree_job_names_its_ensemble(report: dict) -> None:
    variant = copy.deepcopy(report)
    variant["model"] = {
        "family": "XGBoost",
        "trees": 30,
        "features": 13,
        "sites": ["cleveland", "hungary"],
        "sha256": "ab" * 32,
        "file": "xgboost_model.json",
    }
    text = model_card_markdown(build_model_card(variant))
    assert (
        "Model: XGBoost tree ensemble, 30 boosting rounds on 13 columns, the same at 2 sites "
        "(SHA-256 abababababab...); exported as `xgboost_model.json` in the job result." in text
    )
