"""The per-site section of a run report: intervals, flags, the gate on the minimum site, curves."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.reports.run_report import build_report, to_markdown
from fedhealth.reports.site_report import cross_site_matrix, participation, site_curves
from fedhealth.training.site_metrics import evaluate_with_intervals

GLOBAL = "SRV_FL_global_model.pt"
# site -> (n_pos, n_neg, separation of the scores): higher separation = higher AUC.
SITES = {"a": (60, 60, 3.0), "b": (50, 50, 3.0), "c": (40, 40, 2.5), "d": (15, 1, 2.0)}


def _intervals(n_pos: int, n_neg: int, sep: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(sep, 1, n_pos), rng.normal(0, 1, n_neg)])
    probs = 1 / (1 + np.exp(-scores))
    labels = np.array([1] * n_pos + [0] * n_neg)
    return evaluate_with_intervals(labels, probs, n_bootstrap=200, seed=seed)


def _cross(sites: dict = SITES) -> dict:
    cross = {}
    for i, (site, spec) in enumerate(sites.items()):
        iv = _intervals(*spec, seed=i)
        cross[site] = {
            GLOBAL: {"accuracy": iv["accuracy"]["value"], "auc": iv["auc"]["value"], "intervals": iv}
        }
        cross[site][site] = {"accuracy": 0.5, "auc": 0.5}
    return cross


def _record(threshold: float = 0.75, sites: dict = SITES) -> dict:
    rounds = [
        {
            "round": r,
            "sites": {s: {"train_loss": 0.6 - 0.05 * r, "global_loss": 0.7 - 0.05 * r} for s in sites},
        }
        for r in range(3)
    ]
    return {
        "job_id": "j",
        "rounds": rounds,
        "gate": {"primary_metric": "auc", "threshold": threshold, "flag_sd": 2.0},
    }


def test_gate_follows_the_minimum_site_not_the_mean() -> None:
    report = build_report("job", _record(0.75), _cross())
    decisions = {s["name"]: s["deploy"] for s in report["sites"]}
    # d has one negative patient: its AUC interval is wide, so it cannot clear 0.75 at its lower bound.
    assert decisions["d"] == "DO NOT DEPLOY"
    assert decisions["a"] == "DEPLOY"
    assert report["deploy_decision"] == "DO NOT DEPLOY"
    assert report["gate"]["deciding_site"] == "d"
    mean_auc = np.mean([s["metrics"]["auc"]["value"] for s in report["sites"]])
    assert mean_auc > 0.75  # the mean would have deployed


def test_a_low_threshold_deploys_when_every_lower_bound_clears() -> None:
    enough = {k: v for k, v in SITES.items() if k != "d"}
    report = build_report("job", _record(0.05, enough), _cross(enough))
    assert report["deploy_decision"] == "DEPLOY"
    assert all(s["deploy"] == "DEPLOY" for s in report["sites"])


def test_a_site_with_one_negative_patient_is_never_cleared() -> None:
    # The percentile bootstrap collapses with one negative patient: the interval looks tight.
    report = build_report("job", _record(0.05), _cross())
    row = next(s for s in report["sites"] if s["name"] == "d")
    assert row["deploy"] == "DO NOT DEPLOY"
    assert "only 1 negative patient" in row["deploy_reason"]
    assert report["gate"]["deciding_site"] == "d" and report["deploy_decision"] == "DO NOT DEPLOY"


def test_four_sites_cannot_be_flagged_and_the_report_says_why() -> None:
    report = build_report("job", _record(), _cross())
    flags = report["flags"]["auc"]
    assert flags["max_possible_z"] == pytest.approx(1.5)
    assert not any(s["flagged"] for s in report["sites"])
    assert "cannot flag" in flags["reason"]
    assert "cannot flag" in to_markdown(report)


def test_one_class_site_reports_undefined_auc_instead_of_crashing() -> None:
    sites = {**SITES, "e": (16, 0, 2.0)}
    report = build_report("job", _record(), _cross(sites))
    row = next(s for s in report["sites"] if s["name"] == "e")
    assert row["metrics"]["auc"]["value"] is None and "one class" in row["metrics"]["auc"]["reason"]
    assert row["deploy"] == "DO NOT DEPLOY"
    assert "one class" in to_markdown(report)


def test_curves_and_matrix_shapes() -> None:
    curves = site_curves(_record())
    assert set(curves) == set(SITES)
    assert curves["a"]["train_loss"] == pytest.approx([0.6, 0.55, 0.5])
    matrix = cross_site_matrix(_cross(), "auc")
    assert matrix["sites"] == sorted(SITES) and len(matrix["models"]) == 1 + len(SITES)
    assert np.array(matrix["values"], dtype=object).shape == (len(SITES), 1 + len(SITES))
    assert matrix["values"][0][matrix["models"].index(GLOBAL)] is not None


def test_a_site_that_never_contributed_has_zero_participation() -> None:
    record = {**_record(), "sites": [*SITES, "slow"]}
    rows = participation(record)
    assert rows["slow"] == {"rounds": 0, "rate": 0.0, "missed_rounds": [0, 1, 2], "rejected_rounds": []}
    assert rows["a"]["rate"] == 1.0


def test_rejected_updates_do_not_count_as_participation() -> None:
    record = {**_record(), "rejected_updates": [{"site": "b", "round": 1, "reason": "NaN"}]}
    rows = participation(record)
    assert rows["b"]["rounds"] == 2 and rows["b"]["rejected_rounds"] == [1]
    assert rows["b"]["rate"] == pytest.approx(2 / 3)
