"""The per-site section of a run report: intervals, flags, the gate on the minimum site, curves."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.reports.run_report import build_report, to_markdown
from fedhealth.reports.site_report import (
    cross_site_matrix,
    participation,
    participation_markdown,
    site_curves,
)
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
    assert rows["slow"] == {
        "rounds": 0,
        "rate": 0.0,
        "missed_rounds": [0, 1, 2],
        "late_rounds": [],
        "rejected_rounds": [],
    }
    assert rows["a"]["rate"] == 1.0


def test_rejected_updates_do_not_count_as_participation() -> None:
    record = {**_record(), "rejected_updates": [{"site": "b", "round": 1, "reason": "NaN"}]}
    rows = participation(record)
    assert rows["b"]["rounds"] == 2 and rows["b"]["rejected_rounds"] == [1]
    assert rows["b"]["rate"] == pytest.approx(2 / 3)


def _late(site: str, rnd: int | None, during: int, *, used: bool = False, task: str = "train") -> dict:
    reason = "" if used else f"It was trained for round {rnd}, not the current {during}."
    return {"site": site, "task": task, "round": rnd, "during_round": during, "used": used, "reason": reason}


# (case, late results, the site's participation row for site "d")
LATE_CASES = [
    (
        "late once, dropped",
        [_late("d", 1, 2)],
        {"rounds": 2, "missed_rounds": [], "late_rounds": [1], "rejected_rounds": []},
    ),
    (
        "late twice",
        [_late("d", 0, 1), _late("d", 2, 2)],
        {"rounds": 1, "missed_rounds": [], "late_rounds": [0, 2], "rejected_rounds": []},
    ),
    (
        "late but still used by the aggregator",
        [_late("d", 1, 1, used=True)],
        {"rounds": 3, "missed_rounds": [], "late_rounds": [], "rejected_rounds": []},
    ),
    (
        "late alignment profile: not a training round",
        [_late("d", None, None, task="ehr_profile")],  # type: ignore[arg-type]
        {"rounds": 3, "missed_rounds": [], "late_rounds": [], "rejected_rounds": []},
    ),
    (
        "late for a round the record does not hold",
        [_late("d", 7, 8)],
        {"rounds": 3, "missed_rounds": [], "late_rounds": [], "rejected_rounds": []},
    ),
]


@pytest.mark.parametrize(("case", "late", "row"), LATE_CASES, ids=[c[0] for c in LATE_CASES])
def test_late_rounds_are_counted_apart_from_missed_and_rejected(case: str, late: list, row: dict) -> None:
    rows = participation({**_record(), "late_results": late})
    assert {k: v for k, v in rows["d"].items() if k != "rate"} == row
    assert rows["d"]["rate"] == pytest.approx(row["rounds"] / 3)
    assert rows["a"]["rounds"] == 3 and rows["a"]["late_rounds"] == []


def test_a_round_without_a_result_is_missed_and_one_with_a_late_result_late() -> None:
    record = _record()
    del record["rounds"][0]["sites"]["d"]  # no result at all in round 0
    record["late_results"] = [_late("d", 1, 2)]  # round 1's came late (its metrics are in the round)
    record["rejected_updates"] = [{"site": "d", "round": 2, "reason": "NaN"}]
    assert participation(record)["d"] == {
        "rounds": 0,
        "rate": 0.0,
        "missed_rounds": [0],
        "late_rounds": [1],
        "rejected_rounds": [2],
    }


def test_the_report_names_late_rounds_and_each_late_result() -> None:
    record = {**_record(), "late_results": [_late("d", 1, 2), _late("c", 0, 0, used=True)]}
    report = build_report("job", record, _cross())
    text = participation_markdown(report)
    assert "- d: 2 of 3 rounds (67%); missed [], late [1], rejected []" in text
    assert "- c:" not in text  # its late result was still used
    late = "- d: train of round 1, arrived during round 2 (It was trained for round 1, not the current 2.)"
    assert late in text
    assert text in to_markdown(report)
    assert report["late_results"] == record["late_results"]
    on_time = build_report("job", _record(), _cross())
    assert participation_markdown(on_time) == "All 4 sites contributed to every round.\n"
