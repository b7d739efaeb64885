"""The per-finding gate, its finding x site table and the positive class in the run report.

All predictions and labels here are synthetic (scores drawn from two normal distributions per
finding and site); they stand for what sites of a multi-label job would send.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.constants import M_INTERVALS, M_PER_FINDING, M_POSITIVE_CLASS
from fedhealth.reports.finding_gate import NOT_REPORTED, finding_gate
from fedhealth.reports.job_result import summary_text
from fedhealth.reports.run_report import build_report, to_markdown
from fedhealth.training.site_metrics import evaluate_with_intervals

GLOBAL = "SRV_FL_global_model.pt"
FINDINGS = ("Effusion", "Mass")
STRONG, WEAK = 4.0, 0.3  # separations of the synthetic scores: AUC about 1.0 and about 0.58
# (case, site -> finding -> separation, finding_thresholds, decision, failing (finding, site) cells)
GOOD, MASS_WEAK = (STRONG, STRONG), (STRONG, WEAK)
CASES = [
    ("all pass", {"a": GOOD, "b": GOOD}, {}, "DEPLOY", []),
    ("one finding at one site", {"a": GOOD, "b": MASS_WEAK}, {}, "DO NOT DEPLOY", [("Mass", "b")]),
    (
        "its own threshold",
        {"a": GOOD, "b": GOOD},
        {"Mass": 0.999},
        "DO NOT DEPLOY",
        [("Mass", "a"), ("Mass", "b")],
    ),
]


def _iv(sep: float, seed: int, n_pos: int = 60, n_neg: int = 60) -> dict:
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(sep, 1, n_pos), rng.normal(0, 1, n_neg)])
    labels = np.array([1] * n_pos + [0] * n_neg)
    return evaluate_with_intervals(labels, 1 / (1 + np.exp(-scores)), n_bootstrap=200, seed=seed)


def _per_site(seps: dict) -> dict:
    return {
        site: {f: _iv(sep, seed=10 * i + k) for k, (f, sep) in enumerate(zip(FINDINGS, s, strict=True))}
        for i, (site, s) in enumerate(seps.items())
    }


def _cross(per_site: dict, positive: str | None = None) -> dict:
    cross = {}
    for i, (site, findings) in enumerate(per_site.items()):
        result = {
            "accuracy": 0.9,
            "auc": 0.9,
            M_INTERVALS: _iv(STRONG, seed=100 + i),
            M_PER_FINDING: findings,
        }
        if positive:
            result[M_POSITIVE_CLASS] = positive
        cross[site] = {GLOBAL: result}
    return cross


def _record(threshold: float = 0.75, finding_thresholds: dict | None = None) -> dict:
    gate = {"primary_metric": "auc", "threshold": threshold, "flag_sd": 2.0}
    if finding_thresholds:
        gate["finding_thresholds"] = finding_thresholds
    return {"job_id": "j", "rounds": [], "gate": gate}


@pytest.mark.parametrize(
    ("case", "seps", "thresholds", "decision", "failing"), CASES, ids=[c[0] for c in CASES]
)
def test_the_decision_is_the_minimum_over_findings_and_sites(
    case: str, seps: dict, thresholds: dict, decision: str, failing: list
) -> None:
    gate = finding_gate(_per_site(seps), metric="auc", threshold=0.75, finding_thresholds=thresholds)
    assert gate["decision"] == decision
    assert [(c["finding"], c["site"]) for c in gate["failing"]] == failing
    assert gate["thresholds"] == {"Effusion": 0.75, "Mass": thresholds.get("Mass", 0.75)}
    for f, site in failing:
        assert gate["sites"][site] == "DO NOT DEPLOY"
        assert gate["findings"][f]["sites"][site]["decision"] == "DO NOT DEPLOY"


def test_an_undefined_or_missing_finding_cannot_clear_its_site() -> None:
    per_site = _per_site({"a": (STRONG, STRONG), "b": (STRONG, STRONG), "c": (STRONG, STRONG)})
    labels, probs = np.zeros(80), np.linspace(0, 1, 80)  # synthetic: no positive patient for Mass at b
    per_site["b"]["Mass"] = evaluate_with_intervals(labels, probs, n_bootstrap=200)
    del per_site["c"]["Mass"]
    gate = finding_gate(per_site, metric="auc", threshold=0.75)
    assert gate["decision"] == "DO NOT DEPLOY"
    assert [(c["finding"], c["site"]) for c in gate["failing"]] == [("Mass", "b"), ("Mass", "c")]
    assert gate["findings"]["Mass"]["sites"]["b"]["reason"].startswith(
        "AUC undefined: the split holds one class"
    )
    assert gate["findings"]["Mass"]["sites"]["c"]["reason"] == NOT_REPORTED
    assert gate["sites"] == {"a": "DEPLOY", "b": "DO NOT DEPLOY", "c": "DO NOT DEPLOY"}


def test_too_few_positive_patients_of_a_finding_cannot_clear_the_site() -> None:
    per_site = _per_site({"a": (STRONG, STRONG)})
    per_site["a"]["Mass"] = _iv(STRONG, seed=3, n_pos=4, n_neg=100)
    gate = finding_gate(per_site, metric="auc", threshold=0.75)
    cell = gate["findings"]["Mass"]["sites"]["a"]
    assert gate["decision"] == "DO NOT DEPLOY" and cell["too_few"] is True
    assert cell["reason"].startswith("only 4 positive patient(s) in the site's test split")


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [({"Mass": 1.2}, "finding_thresholds['Mass'] must be a number strictly between 0 and 1, got 1.2."),
     ({"Mass": "high"}, "finding_thresholds['Mass'] must be a number strictly between 0 and 1, got 'high'."),
     ({"": 0.8}, "finding_thresholds: finding names must be non-empty strings, got ''.")],
)  # fmt: skip
def test_bad_finding_thresholds_are_refused(thresholds: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        finding_gate(
            _per_site({"a": (STRONG, STRONG)}), metric="auc", threshold=0.75, finding_thresholds=thresholds
        )
    assert str(err.value) == message


def test_a_threshold_for_an_unknown_finding_fails_the_gate() -> None:
    per_site = _per_site({"a": (STRONG, STRONG)})
    gate = finding_gate(per_site, metric="auc", threshold=0.75, finding_thresholds={"Efusion": 0.9})
    assert gate["failing"] == [] and gate["unknown_thresholds"] == ["Efusion"]
    assert gate["decision"] == "DO NOT DEPLOY"


def test_report_shows_the_finding_by_site_table_and_names_the_failing_cell() -> None:
    cross = _cross(_per_site({"a": (STRONG, STRONG), "b": (STRONG, WEAK)}))
    report = build_report("cxr_multilabel", _record(0.75, {"Effusion": 0.8}), cross)
    assert report["deploy_decision"] == "DO NOT DEPLOY"
    assert report["gate"]["decision"] == "DEPLOY"  # "any finding" alone would have deployed
    assert {s["name"]: s["deploy"] for s in report["sites"]} == {"a": "DEPLOY", "b": "DO NOT DEPLOY"}
    assert report["positive_class"]["name"] == "any finding"
    md = to_markdown(report)
    assert "| finding | threshold | a | b |\n|---|---:|---|---|\n" in md
    table = report["per_finding"]["findings"]
    mass_b = table["Mass"]["sites"]["b"]
    cell = f"{mass_b['value']:.3f} [{mass_b['lower_bound']:.3f}, {mass_b['hi']:.3f}] **FAIL**"
    assert mass_b["lower_bound"] < 0.75 and "| Mass | 0.75 | " in md and cell in md
    effusion_a = table["Effusion"]["sites"]["a"]
    assert f"| Effusion | 0.8 | {effusion_a['value']:.3f} [{effusion_a['lower_bound']:.3f}, " in md
    line = (
        "Per-finding deployment gate: DO NOT DEPLOY (auc lower 95% bound >= each finding's threshold at "
        "every site); failing: Mass at b."
    )
    assert f"**{line}**" in md and line in summary_text(report)
    assert "**Any-finding gate (information only; the per-finding gate below decides): DEPLOY**" in md
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith(("| a |", "| b |"))}
    assert rows["| a"].endswith("| no | DEPLOY |") and rows["| b"].endswith("| no | DO NOT DEPLOY |")
    assert "| sensitivity (positive class: any finding) | specificity |" in md
    assert "- Mass at b: auc = " in md


def test_all_findings_pass_deploys() -> None:
    cross = _cross(_per_site({"a": (STRONG, STRONG), "b": (STRONG, STRONG)}))
    report = build_report("cxr_multilabel", _record(0.75), cross)
    assert report["deploy_decision"] == "DEPLOY" and report["per_finding"]["failing"] == []
    assert "**Per-finding deployment gate: DEPLOY (auc lower 95% bound" in to_markdown(report)


@pytest.mark.parametrize(
    ("positive", "heading"),
    [
        ("pneumonia", "sensitivity (positive class: pneumonia)"),
        (None, "sensitivity (positive class: 1 (label value))"),
    ],
)
def test_a_binary_report_names_the_positive_class(positive: str | None, heading: str) -> None:
    cross = {
        s: {GLOBAL: {"accuracy": 0.9, "auc": 0.9, M_INTERVALS: _iv(STRONG, seed=i)}}
        for i, s in enumerate("ab")
    }
    if positive:
        for s in cross:
            cross[s][GLOBAL][M_POSITIVE_CLASS] = positive
    report = build_report("cxr_fedavg", _record(), cross)
    md = to_markdown(report)
    assert f"| site | n (pos/neg) | AUC | accuracy | {heading} | specificity |" in md
    assert f"Positive class: {positive or '1 (label value)'}. Sensitivity is the share" in md
    assert report["per_finding"] is None and report["positive_class"]["stated"] is bool(positive)
    assert f"positive class of sensitivity and specificity: {positive or '1 (label value)'}" in summary_text(
        report
    )


def test_sites_that_disagree_on_the_positive_class_are_named() -> None:
    cross = {s: {GLOBAL: {M_INTERVALS: _iv(STRONG, seed=i)}} for i, s in enumerate("abc")}
    cross["a"][GLOBAL][M_POSITIVE_CLASS] = "pneumonia"
    cross["b"][GLOBAL][M_POSITIVE_CLASS] = "normal"
    positive = build_report("j", _record(), cross)["positive_class"]
    assert positive["name"] == "normal / pneumonia"
    assert positive["note"] == (
        "the sites name different positive classes: a: pneumonia; b: normal; c: 1 (label value); their "
        "sensitivities do not count the same class and cannot be compared; c did not state a positive class "
        "(label value 1 assumed there)"
    )


def test_an_old_result_without_the_new_keys_still_reports() -> None:
    """A job result written before per-finding results and the positive class: binary gate as before."""
    cross = {
        s: {GLOBAL: {"accuracy": 0.9, "auc": 0.9, M_INTERVALS: _iv(STRONG, seed=i)}}
        for i, s in enumerate("ab")
    }
    record = {
        "job_id": "old",
        "rounds": [],
        "gate": {"primary_metric": "auc", "threshold": 0.75, "flag_sd": 2.0},
    }
    report = build_report("old", record, cross)
    assert report["deploy_decision"] == report["gate"]["decision"] == "DEPLOY"
    assert report["per_finding"] is None
    md = to_markdown(report)
    assert "Per-finding" not in md and "**Deployment gate: DEPLOY**" in md
    assert "sensitivity (positive class: 1 (label value))" in md


def test_a_site_without_per_finding_results_in_a_multi_label_run_is_not_cleared() -> None:
    cross = _cross(_per_site({"a": (STRONG, STRONG), "b": (STRONG, STRONG)}))
    del cross["b"][GLOBAL][M_PER_FINDING]  # an older site in the same run
    report = build_report("mixed", _record(0.75), cross)
    assert report["deploy_decision"] == "DO NOT DEPLOY"
    assert [(c["finding"], c["site"]) for c in report["per_finding"]["failing"]] == [
        ("Effusion", "b"),
        ("Mass", "b"),
    ]
