"""A site sends a poisoned update every round: the server rejects it and the model stays sound.

Real FLARE processes in POC mode; VA Long Beach runs a job app with fedhealth's fault-drill filter
(NaN in its weights, or every weight x100); the RobustAggregator must reject it each round.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from fedhealth.poc.demo import run_job
from fedhealth.poc.workspace import prepare_workspace, write_heart_data
from fedhealth.reports.run_report import build_report, find_run_files

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PORT = 8132
ROUNDS = 3
POISONED = "va_long_beach"
# (mode, words the rejection reason must contain)
CASES = [("nan", "non-finite"), ("scale", "norm")]


def _project(tmp_path: Path) -> Path:
    project = yaml.safe_load((ROOT / "project.yml").read_text())
    for participant in project["participants"]:
        if participant["type"] == "server":
            participant["fed_learn_port"] = participant["admin_port"] = PORT
    path = tmp_path / "project.yml"
    path.write_text(yaml.safe_dump(project))
    return path


def _poisoned_job(tmp_path: Path, mode: str) -> Path:
    job = tmp_path / "jobs" / "heart_fedprox"
    shutil.copytree(ROOT / "jobs" / "heart_fedprox", job)
    shutil.copytree(job / "app", job / "app_poisoned")
    meta = json.loads((job / "meta.json").read_text())
    meta["deploy_map"] = {
        "app": ["server", "cleveland", "hungary", "switzerland"],
        "app_poisoned": [POISONED],
    }
    (job / "meta.json").write_text(json.dumps(meta))
    server = job / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    for workflow in config["workflows"]:
        if "num_rounds" in workflow["args"]:
            workflow["args"]["num_rounds"] = ROUNDS
    server.write_text(json.dumps(config))
    client = job / "app_poisoned" / "config" / "config_fed_client.json"
    config = json.loads(client.read_text())
    config["task_result_filters"] = [
        {
            "tasks": ["train"],
            "filters": [
                {
                    "path": "fedhealth.filters.fault_injector.FaultInjector",
                    "args": {"mode": mode, "factor": 100.0},
                }
            ],
        }
    ]
    client.write_text(json.dumps(config))
    return job


@pytest.mark.parametrize(("mode", "words"), CASES)
def test_poisoned_updates_are_rejected_every_round(tmp_path: Path, mode: str, words: str) -> None:
    workspace = tmp_path / "ws"
    layout = prepare_workspace(_project(tmp_path), workspace / "poc")
    write_heart_data(layout)
    result = run_job(layout, _poisoned_job(tmp_path, mode), workspace=workspace, timeout=300)
    record, cross = find_run_files(result)
    report = build_report("heart_fedprox", record, cross)
    rejected = report["rejected_updates"]
    assert [r["site"] for r in rejected] == [POISONED] * ROUNDS
    assert sorted(r["round"] for r in rejected) == list(range(ROUNDS))
    assert all(words in r["reason"] for r in rejected)
    assert report["participation"][POISONED]["rate"] == 0.0  # reported every round, counted in none
    assert report["participation"][POISONED]["rejected_rounds"] == list(range(ROUNDS))
    # The global model stayed sound: finite, and it beats its start at every honest site.
    for site in report["sites"]:
        if site["name"] != POISONED:
            assert site["loss"] < site["initial"]["loss"], site["name"]
        assert site["accuracy"] is not None and 0.0 <= site["accuracy"] <= 1.0
