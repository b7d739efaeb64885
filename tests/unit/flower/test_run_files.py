"""A Flower run's results as the kit's run files, read back by the kit's report (flower.run_files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.flower.run_files import GLOBAL_MODEL, FlowerRunLog
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth.training.site_metrics import evaluate_with_intervals

GATE = {"primary_metric": "auc", "threshold": 0.75, "flag_sd": 2.0}
SITES = {"a": (100, 50), "b": (60, 30)}


def _round(site: str, rnd: int) -> dict:
    n_train, n_test = SITES[site]
    return {
        "round": rnd,
        "train_loss": 0.7 - 0.1 * rnd,
        "n_train": n_train,
        "n_test": n_test,
        "global_accuracy": 0.6 + 0.1 * rnd,
        "global_auc": 0.7,
        "eval_split": "test",
    }


def _validation(site: str, seed: int) -> dict:
    n_train, n_test = SITES[site]
    labels = [0.0, 1.0] * (n_test // 2)
    probs = [0.3, 0.8] * (n_test // 2)
    probs[0] = 0.9  # one error
    return {
        "accuracy": 1 - 1 / n_test,
        "auc": 0.95,
        "loss": 0.3,
        "n_train": n_train,
        "n_test": n_test,
        "intervals": evaluate_with_intervals(labels, probs, n_bootstrap=200, seed=seed),
    }


def test_report_reads_a_flower_run(tmp_path: Path) -> None:
    log = FlowerRunLog(tmp_path, job_id="job-1", gate=GATE, num_rounds=2)
    for rnd in range(2):
        log.start_round(rnd)
        log.end_round(rnd, {site: _round(site, rnd) for site in SITES})
    log.validation({site: _validation(site, i) for i, site in enumerate(SITES)})
    log.finish()
    record, cross = find_run_files(tmp_path)
    assert record["status"] == "finished" and record["completed_rounds"] == [0, 1]
    assert [t["round"] for t in record["round_times"]] == [0, 1]
    assert all(t["done"] >= t["started"] for t in record["round_times"])
    assert set(cross) == set(SITES) and all(GLOBAL_MODEL in models for models in cross.values())
    report = build_report("heart_flower", record, cross)
    assert report["rounds"] == 2 and report["global"]["model"] == GLOBAL_MODEL
    rows = {s["name"]: s for s in report["sites"]}
    assert {name: (r["n_train"], r["n_test"]) for name, r in rows.items()} == SITES
    assert rows["a"]["accuracy"] == pytest.approx(0.98) and rows["b"]["auc"] == 0.95
    # round 1's global accuracy, weighted by test sizes: 0.7 at both sites
    assert report["history"][1]["global_accuracy"] == pytest.approx(0.7)
    assert report["curves"]["a"]["train_loss"] == [pytest.approx(0.7), pytest.approx(0.6)]
    assert report["deploy_decision"] in ("DEPLOY", "DO NOT DEPLOY")


def test_failures_and_abort_are_recorded(tmp_path: Path) -> None:
    log = FlowerRunLog(tmp_path, job_id="job-2", gate=GATE, num_rounds=3)
    log.start_round(0)
    log.failed("node 7", "train", 0, "ClientApp raised ValueError")
    log.finish("aborted", "RuntimeError: round 0: no site returned a model")
    record = json.loads((tmp_path / "fedhealth_run.json").read_text())
    assert record["status"] == "aborted" and record["abort_round"] == 0
    assert record["failures"] == [
        {"site": "node 7", "task": "train", "round": 0, "reason": "ClientApp raised ValueError"}
    ]
    assert not (tmp_path / "cross_site_val").exists()


def test_rounds_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_rounds must be at least 1, got 0"):
        FlowerRunLog(tmp_path, job_id="x", gate=GATE, num_rounds=0)
