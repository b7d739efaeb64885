"""A metric a site withheld as a small cell: the report says "suppressed" and the gate "not evaluable".

The sites' validations pass through the site's own release (:mod:`fedhealth.privacy.released_metrics`)
exactly as a real site sends them; the report must render them without crashing and never clear a
site on a withheld metric.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from fedhealth import constants as C
from fedhealth.privacy.released_metrics import release_validation
from fedhealth.reports.run_report import build_report, site_table, to_markdown
from fedhealth.training.operating_point import OperatingPointConfig
from fedhealth.training.site_metrics import evaluate_with_intervals
from fedhealth.training.site_operating_point import site_operating_point

MODEL = "SRV_FL_global_model.pt"
# site -> (positive, negative) test patients; "tiny" has 3 positives, a small cell under the default 5
SITES = {"a": (60, 60), "b": (50, 50), "tiny": (3, 40)}
WHY = "fewer than 5 positive patients"


def _split(n_pos: int, n_neg: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    return y, expit(rng.normal(4.0 * y - 2.0, 1.0))


def _validation(n_pos: int, n_neg: int, seed: int, *, findings: bool = False) -> dict:
    y, p = _split(n_pos, n_neg, seed)
    op, iv = site_operating_point(
        _split(n_pos, n_neg, seed + 10), (y, p), OperatingPointConfig(), n_bootstrap=50
    )
    raw = {
        C.M_ACCURACY: iv["accuracy"]["value"],
        C.M_AUC: iv["auc"]["value"],
        C.M_LOSS: 0.4,
        C.M_N_TEST: n_pos + n_neg,
        C.M_INTERVALS: iv,
        C.M_OPERATING_POINT: op,
    }
    pairs = [(n_pos, n_neg)]
    if findings:  # "Effusion" follows the site's split, "Edema" is the same at every site
        edema = _split(30, 30, seed + 20)
        raw[C.M_PER_FINDING] = {
            "Effusion": iv,
            "Edema": evaluate_with_intervals(*edema, n_bootstrap=50, seed=seed),
        }
        pairs.append((30, 30))
    return release_validation(raw, pairs=pairs, n=n_pos + n_neg, min_cell=5)


def _cross(*, findings: bool = False) -> dict:
    return {
        site: {MODEL: _validation(*counts, seed=i, findings=findings)}
        for i, (site, counts) in enumerate(SITES.items())
    }


def _record(threshold: float = 0.6) -> dict:
    sites = {s: {C.M_N_TRAIN: 100, C.M_N_TEST: sum(c)} for s, c in SITES.items()}
    return {
        "job_id": "j",
        "rounds": [{"round": 0, "sites": sites}],
        "gate": {"primary_metric": "auc", "threshold": threshold, "flag_sd": 2.0},
    }


def test_a_suppressed_site_is_not_evaluable_and_the_job_is_not_deployed() -> None:
    report = build_report("job", _record(), _cross())
    gate = report["gate"]["sites"]
    assert gate["a"]["decision"] == gate["b"]["decision"] == "DEPLOY"
    assert gate["tiny"] == {
        "decision": "DO NOT DEPLOY",
        "lower_bound": None,
        "value": None,
        "reason": f"not evaluable: the site withheld auc ({WHY}), so it cannot be cleared",
        C.M_SUPPRESSED: True,
    }
    assert report["gate"]["deciding_site"] == "tiny"
    assert report["deploy_decision"] == "DO NOT DEPLOY"
    assert report["flags"]["auc"]["sites"]["tiny"]["excluded"] == f"suppressed: {WHY}"


def test_the_markdown_says_suppressed_where_a_value_was_withheld() -> None:
    report = build_report("job", _record(), _cross())
    md = to_markdown(report)
    row = next(line for line in md.splitlines() if line.startswith("| tiny | 43 ("))
    auc, accuracy, sens, spec, flagged, decision = (c.strip() for c in row.split("|")[3:9])
    assert (auc, sens, spec, flagged, decision) == (
        "suppressed",
        "suppressed",
        "suppressed",
        "no",
        "DO NOT DEPLOY",
    )
    assert accuracy.startswith("0.")  # 43 patients: accuracy is released
    assert md.count(f"- tiny: suppressed: {WHY}.") == 1  # one line, not one per metric
    tiny = next(line for line in site_table(report).splitlines() if line.startswith("| tiny |"))
    assert tiny.startswith("| tiny | 100 | 43 | 0.") and tiny.endswith("| suppressed |")
    op_row = next(line for line in md.splitlines() if line.startswith("| tiny | youden"))
    assert "suppressed / suppressed" in op_row and op_row.endswith(
        "| suppressed | suppressed | suppressed / suppressed |"
    )
    assert f"- tiny: suppressed: {WHY} in the validation split." in md
    assert "3 positive" not in md and "(3/" not in md


def test_the_finding_table_marks_a_suppressed_cell_and_the_gate_fails() -> None:
    report = build_report("job", _record(), _cross(findings=True))
    section = report["per_finding"]
    assert section["decision"] == "DO NOT DEPLOY"
    assert section["findings"]["Edema"]["sites"]["tiny"]["decision"] == "DEPLOY"
    assert [(c["finding"], c["site"]) for c in section["failing"]] == [("Effusion", "tiny")]
    md = to_markdown(report)
    effusion = next(line for line in md.splitlines() if line.startswith("| Effusion |"))
    assert effusion.endswith("| suppressed (not evaluable) **FAIL** |")
