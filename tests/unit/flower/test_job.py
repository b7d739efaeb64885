"""The kit's job folders read as plain settings for the Flower apps (no FLARE, no Flower)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedhealth.flower.job import kit_job_folder, read_job

ROOT = Path(__file__).resolve().parents[3]


def _configs(name: str) -> tuple[dict, dict]:
    config = ROOT / "jobs" / name / "app" / "config"
    return (
        json.loads((config / "config_fed_client.json").read_text()),
        json.loads((config / "config_fed_server.json").read_text()),
    )


def _args(items: list[dict], suffix: str) -> dict:
    return next(i["args"] for i in items if i["path"].endswith(suffix))


# (job, task, model kind, aligns)
CASES = [("heart_fedprox", "tabular", "tabular", True), ("cxr_fedavg", "dicom", "image", False)]


@pytest.mark.parametrize(("name", "task", "model", "aligns"), CASES, ids=[c[0] for c in CASES])
def test_every_setting_comes_from_the_job_files(name: str, task: str, model: str, aligns: bool) -> None:
    client, server = _configs(name)
    executor = client["executors"][0]["executor"]["args"]
    job = read_job(ROOT / "jobs" / name)
    assert (job.name, job.task, job.model[0], job.alignment is not None) == (name, task, model, aligns)
    assert job.task_args == executor["task_args"]
    assert job.local == {k: executor[k] for k in job.local} and len(job.local) == 5
    assert (job.seed, job.n_bootstrap) == (executor["seed"], executor["n_bootstrap"])
    generator = _args(server["components"], "ScheduledShareableGenerator")
    assert (job.lr, job.gamma) == (generator["lr"], generator["gamma"])
    sag = _args(server["workflows"], "ScatterAndGather")
    assert (job.rounds, job.min_clients) == (sag["num_rounds"], sag["min_clients"])
    aggregator = _args(server["components"], "RobustAggregator")
    assert job.aggregation == {"rule": aggregator["rule"], "max_norm_ratio": aggregator["max_norm_ratio"]}
    fedprox = [a["args"]["mu"] for a in executor["algorithms"] if a["name"] == "fedprox"]
    assert job.mu == (fedprox[0] if fedprox else 0.0)


def test_heart_reads_fedprox_and_the_alignment_policy() -> None:
    _, server = _configs("heart_fedprox")
    alignment = _args(server["workflows"], "EhrAlignmentController")
    job = read_job(kit_job_folder("heart_fedprox"))
    assert job.mu > 0 and job.local["optimizer"] == "sgd"
    assert job.alignment.min_cell == alignment["min_cell"]
    assert job.alignment.min_sites_with_feature == alignment["min_sites_with_feature"]
    assert job.alignment_min_clients == alignment["min_clients"]
    assert "in_features" not in job.model[1]  # the width comes from the aligned schema


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    job = shutil.copytree(ROOT / "jobs" / "heart_fedprox", tmp_path / "heart_fedprox")
    (job / "app" / "config" / "config_fed_server.json").unlink()
    with pytest.raises(ValueError, match=r"config_fed_server\.json is missing"):
        read_job(job)


def test_a_job_without_the_site_executor_is_refused(tmp_path: Path) -> None:
    job = shutil.copytree(ROOT / "jobs" / "cxr_fedavg", tmp_path / "cxr_fedavg")
    client_file = job / "app" / "config" / "config_fed_client.json"
    client = json.loads(client_file.read_text())
    client["executors"] = []
    client_file.write_text(json.dumps(client))
    with pytest.raises(ValueError, match=r"names 0 SiteExecutor\(s\)"):
        read_job(job)


def test_an_unknown_kit_job_names_the_run_config_key() -> None:
    with pytest.raises(ValueError, match="job-dir"):
        kit_job_folder("no_such_job")
