"""End to end in FLARE POC mode: a real server, four real site processes, mTLS, the FLARE API.

Slow (about a minute each); marked ``slow``. Each test provisions its own workspace under
``tmp_path`` on its own port, so it does not collide with a running ``fedhealth demo``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import psutil
import pytest

from fedhealth.constants import HEART_DATASET_DIR, HEART_SITES, TRAIN_FILE
from fedhealth_tools.poc.demo import run_demo, run_job
from fedhealth_tools.poc.processes import free_port
from fedhealth_tools.poc.variants import heart_poc, job_variant, project_on_port
from fedhealth_tools.poc.workspace import PocError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
# The sites' default floor (fedhealth.policy.site_limits) declines the shipped batch 4.
BATCH_16 = {"batch_size": 16}


def _flare_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if "fedhealth_test_ws" in cmd:
            found.append(proc)
    return found


def test_poc_fedprox_beats_initial_model_at_every_site(tmp_path: Path) -> None:
    workspace = tmp_path / "fedhealth_test_ws"
    report = run_demo(
        job_dir=job_variant(
            ROOT / "jobs" / "heart_fedprox",
            tmp_path / "jobs" / "heart_fedprox",
            rounds=ROUNDS,
            executor_args=BATCH_16,
        ),
        project_file=project_on_port(ROOT / "provision" / "poc.yml", tmp_path / "project.yml", free_port()),
        workspace=workspace,
        results_dir=tmp_path / "results",
        timeout=300,
    )
    assert report["rounds"] == ROUNDS
    assert sorted(s["name"] for s in report["sites"]) == sorted(HEART_SITES)
    sizes = {s["name"]: (s["n_train"], s["n_test"]) for s in report["sites"]}
    assert sizes == {
        "cleveland": (199, 104),
        "hungary": (172, 89),
        "switzerland": (30, 16),
        "va_long_beach": (85, 45),
    }
    for site in report["sites"]:
        # Loss, not accuracy: a random start can score well on Switzerland's nearly all-positive test set.
        assert site["loss"] < site["initial"]["loss"], site["name"]
        assert 0.0 <= site["accuracy"] <= 1.0
    assert report["global"]["accuracy"] > 0.7
    saved = json.loads((tmp_path / "results" / "report.json").read_text())
    assert {"job", "rounds", "sites", "global"} <= set(saved)
    assert len(saved["sites"]) == 4 and saved["global"]["auc"] > 0.7
    assert (tmp_path / "results" / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The cross-site matrix holds the global model and each site's local model, on every site.
    assert all(len(models) == 5 for models in report["cross_site"].values())
    matrix = report["cross_site_matrix"]["auc"]
    assert len(matrix["sites"]) == 4 and len(matrix["models"]) == 5
    # Per-site validation with intervals, flags and the gate on the minimum site.
    assert saved["deploy_decision"] in ("DEPLOY", "DO NOT DEPLOY")
    for site in saved["sites"]:
        auc = site["metrics"]["auc"]
        assert auc["lo"] <= auc["value"] <= auc["hi"] and site["deploy"] in ("DEPLOY", "DO NOT DEPLOY")
        assert site["flagged"] is False  # four sites: the 2-SD rule cannot fire, and the report says so
    switzerland = next(s for s in saved["sites"] if s["name"] == "switzerland")
    assert switzerland["deploy"] == "DO NOT DEPLOY" and "1 negative" in switzerland["deploy_reason"]
    assert saved["deploy_decision"] == "DO NOT DEPLOY"
    assert len(saved["curves"]["cleveland"]["train_loss"]) == ROUNDS
    # TensorBoard event files with per-site curves, streamed to the server.
    assert {p.name for p in (tmp_path / "results" / "tb_events").iterdir()} == set(HEART_SITES)
    assert _flare_processes() == []


def test_poc_site_with_missing_column_fails_and_server_names_it(tmp_path: Path) -> None:
    workspace = tmp_path / "fedhealth_test_ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    train = layout.kit("switzerland") / "data" / HEART_DATASET_DIR / TRAIN_FILE
    pd.read_csv(train).drop(columns=["chol"]).to_csv(train, index=False)
    with pytest.raises(PocError) as info:
        run_job(
            layout,
            job_variant(
                ROOT / "jobs" / "heart_fedprox",
                tmp_path / "jobs" / "heart_fedprox",
                rounds=2,
                executor_args=BATCH_16,
            ),
            workspace=workspace,
            timeout=240,
        )
    message = str(info.value)
    assert "switzerland" in message
    assert "train.csv" in message and "'chol'" in message
    assert "cleveland:" not in message  # only the failed site is blamed
    assert _flare_processes() == []
