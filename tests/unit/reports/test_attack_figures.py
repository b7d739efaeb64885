"""Measured attack figures for a job's settings: the audit row chosen, its sentence, the report section.

``data/bench_privacy_attacks.json`` is a fixture in the audit's format (its figures are illustrative,
not measurements): cxr rows at batch 1, 4, 8, 16, 32 (protected: 1, 8, 16, 32), 1 and 5 local steps,
sgd and adam; heart rows at batch 1, 4, 16, 32, 1 and 5 steps, sgd; protections none, dp_eps1,
dp_eps8, secure_sum4, topk1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedhealth.reports.attack_figures import (
    AUDIT_FILE,
    attack_figures,
    default_audit_path,
    load_audit,
    nearest_row,
)
from fedhealth.reports.attack_settings import JobSettings, job_settings
from fedhealth.reports.job_result import report_job_result
from fedhealth.reports.privacy_report import ATTACK_HEADING, attack_markdown
from fedhealth.reports.run_report import build_report, to_markdown
from fedhealth_tools.cli import main

DATA = Path(__file__).parent / "data"
AUDIT = DATA / AUDIT_FILE
RESULT = DATA / "heart_fedprox_result"
ROOT = Path(__file__).resolve().parents[3]

# (settings, audited protection, batch, local steps, optimizer, exact)
MATCH_CASES = [
    (JobSettings("heart", batch=16, local_steps=1, optimizer="sgd"), "none", 16, 1, "sgd", True),
    (JobSettings("cxr", batch=64, local_steps=6, optimizer="adam"), "none", 32, 5, "adam", False),
    (JobSettings("cxr", batch=12, local_steps=3, optimizer="sgd"), "none", 8, 1, "sgd", False),
    (JobSettings("heart", batch=16, local_steps=2, optimizer="adam"), "none", 16, 1, "sgd", False),
    (JobSettings("heart", batch=None, local_steps=None, optimizer="sgd"), "none", 1, 1, "sgd", False),
    (
        JobSettings("cxr", batch=64, local_steps=5, optimizer="adam", epsilon=5.0),
        "dp_eps8",
        32,
        5,
        "adam",
        False,
    ),
    (
        JobSettings("heart", batch=16, local_steps=1, optimizer="sgd", epsilon=0.5),
        "dp_eps1",
        16,
        1,
        "sgd",
        False,
    ),
    (
        JobSettings("heart", batch=16, local_steps=1, optimizer="sgd", epsilon=1.0),
        "dp_eps1",
        16,
        1,
        "sgd",
        True,
    ),
    (
        JobSettings("heart", batch=16, local_steps=1, optimizer="sgd", epsilon=20.0),
        "none",
        16,
        1,
        "sgd",
        False,
    ),
    (
        JobSettings("heart", batch=16, local_steps=5, optimizer="sgd", secure_sum_sites=4),
        "secure_sum4",
        16,
        5,
        "sgd",
        True,
    ),  # fmt: skip
    (
        JobSettings("heart", batch=16, local_steps=5, optimizer="sgd", secure_sum_sites=3),
        "none",
        16,
        5,
        "sgd",
        False,
    ),  # fmt: skip
    (
        JobSettings("cxr", batch=16, local_steps=1, optimizer="sgd", k_fraction=0.005),
        "topk1",
        16,
        1,
        "sgd",
        False,
    ),
    (
        JobSettings("cxr", batch=16, local_steps=1, optimizer="sgd", k_fraction=0.1),
        "none",
        16,
        1,
        "sgd",
        False,
    ),
]


@pytest.fixture(scope="module")
def audit() -> dict:
    return load_audit(AUDIT)


def _figures(settings: JobSettings, audit: dict | None, **kw) -> dict:
    return attack_figures(settings, audit, audit_path=AUDIT, **kw)


@pytest.mark.parametrize(("settings", "protection", "batch", "steps", "optimizer", "exact"), MATCH_CASES)
def test_the_row_chosen_is_the_nearest_no_stronger_setting(
    audit: dict, settings: JobSettings, protection: str, batch: int, steps: int, optimizer: str, exact: bool
) -> None:
    (match,) = _figures(settings, audit)["matches"]
    row = match["row"]
    assert (match["protection"], row["batch"], row["local_steps"], row["optimizer"]) == (
        protection,
        batch,
        steps,
        optimizer,
    )
    assert match["exact"] is exact
    assert match["sentence"].startswith(
        "Audited at this job's setting" if exact else "Nearest audited setting"
    )


def test_an_exact_match_carries_the_row_figures_and_membership(audit: dict) -> None:
    settings = JobSettings("heart", batch=16, local_steps=1, optimizer="sgd")
    (match,) = _figures(settings, audit)["matches"]
    assert match["figures"] == {"recovered_fraction": 0.329, "exact_rows": 0.0}
    assert match["membership"] == [{"attack": "loss_threshold", "auc": 0.53}, {"attack": "lira", "auc": 0.58}]
    assert match["sentence"] == "Audited at this job's setting (batch 16, 1 local step, sgd, no protection)."


def test_a_nearest_match_names_the_audited_setting_and_the_job(audit: dict) -> None:
    (match,) = _figures(JobSettings("cxr", batch=64, local_steps=6, optimizer="adam"), audit)["matches"]
    assert match["sentence"] == (
        "Nearest audited setting: batch 32, 5 local steps, adam, no protection; "
        "this job: batch 64, 6 local steps, adam, no protection."
    )
    assert match["figures"] == {"ssim_mean": 0.155, "psnr_mean": 11.79}


def test_dp_is_read_at_the_next_larger_audited_epsilon_and_says_so(audit: dict) -> None:
    settings = JobSettings("heart", batch=16, local_steps=1, optimizer="sgd", epsilon=5.0)
    (match,) = _figures(settings, audit)["matches"]
    assert match["protection"] == "dp_eps8" and match["figures"]["recovered_fraction"] == 0.1
    assert "Audited at ε=8, this job ε=5: the weaker audited setting." in match["sentence"]
    assert [m["auc"] for m in match["membership"]] == [0.51, 0.52]
    (above,) = _figures(JobSettings("heart", batch=16, local_steps=1, optimizer="sgd", epsilon=20), audit)[
        "matches"
    ]
    assert "No audited dp_eps setting is as weak as this job's (DP-SGD ε=20)" in above["sentence"]
    assert "dp_eps1, dp_eps8 would overstate its protection" in above["sentence"]


def test_top_k_keeping_more_than_the_audited_share_is_bounded_by_no_protection(audit: dict) -> None:
    (match,) = _figures(JobSettings("cxr", batch=16, local_steps=1, optimizer="sgd", k_fraction=0.1), audit)[
        "matches"
    ]
    assert match["protection"] == "none" and match["figures"]["ssim_mean"] == 0.383
    assert "topk1 would overstate its protection" in match["sentence"]


def test_he_with_dp_gives_one_row_per_protection(audit: dict) -> None:
    settings = JobSettings("heart", batch=16, local_steps=1, optimizer="sgd", epsilon=5.0, secure_sum_sites=4)
    matches = _figures(settings, audit)["matches"]
    assert [(m["protection"], m["figures"]["recovered_fraction"]) for m in matches] == [
        ("dp_eps8", 0.1),
        ("secure_sum4", 0.084),
    ]


def test_the_floor_line_reports_the_unprotected_row_at_the_floor_batch(audit: dict) -> None:
    floor = _figures(JobSettings("cxr", batch=64, local_steps=5, optimizer="adam"), audit)["floor"]
    assert (floor["row"]["batch"], floor["row"]["local_steps"], floor["row"]["optimizer"]) == (16, 1, "adam")
    assert floor["sentence"] == (
        "Site floor defaults (min_batch_size 16, min_examples_per_round 16): a job at the floor (batch 16, "
        "1 local step, adam, no protection) measured SSIM 0.20, PSNR 12.6 dB: what the floor alone buys."
    )


def test_without_an_audit_file_the_section_names_the_command(tmp_path: Path) -> None:
    missing = tmp_path / AUDIT_FILE
    assert load_audit(missing) is None
    section = attack_figures(JobSettings("heart", batch=16), None, audit_path=missing)
    assert section["available"] is False
    assert section["message"] == (
        f"No privacy audit at {missing}: run `make bench-privacy-attacks` "
        "(or `fedhealth privacy-audit --job <job folder>`) to measure the attacks."
    )
    md = attack_markdown(section)
    assert md.startswith(f"## Privacy\n\n{ATTACK_HEADING}\n\nNo privacy audit at {missing}")


def test_a_tree_job_is_not_audited(audit: dict) -> None:
    record = {"model": {"family": "xgboost"}, "rounds": []}
    section = _figures(job_settings("heart_xgboost", record), audit)
    assert section["available"] is False and "gradient-boosted trees" in section["message"]


def test_an_audit_row_without_its_keys_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / AUDIT_FILE
    bad.write_text(json.dumps({"inversion": [{"data": "cxr", "batch": 1}]}))
    with pytest.raises(ValueError, match=r"inversion\[0\] lacks local_steps, optimizer, protection"):
        load_audit(bad)


def test_the_default_audit_is_the_checkouts_results_file() -> None:
    assert default_audit_path() == ROOT / "results" / AUDIT_FILE


# (shipped job, data, batch, optimizer, ε, secure-sum sites, top-k share)
JOB_CASES = [
    ("heart_fedprox", "heart", 16, "sgd", None, None, None),
    ("heart_dp", "heart", 16, "sgd", 5.0, None, None),
    ("heart_he", "heart", 16, "sgd", None, 4, None),
    ("heart_he_dp", "heart", 16, "sgd", 5.0, 4, None),
    ("heart_topk", "heart", 16, "sgd", None, None, 0.1),
    ("cxr_dp", "cxr", 256, "adam", 5.0, None, None),
    ("cxr_he", "cxr", 64, "adam", None, 4, None),
    ("cxr_topk", "cxr", 64, "adam", None, None, 0.1),
    ("heart_secagg", "heart", 16, "sgd", None, 4, None),
    ("cxr_secagg", "cxr", 64, "adam", None, 4, None),
]


@pytest.mark.parametrize(("job", "data", "batch", "optimizer", "epsilon", "summed", "k"), JOB_CASES)
def test_settings_of_the_shipped_jobs(job, data, batch, optimizer, epsilon, summed, k) -> None:
    config = json.loads((ROOT / "jobs" / job / "app" / "config" / "config_fed_client.json").read_text())
    record = {
        "sites": ["a", "b", "c", "d"],
        "rounds": [{"round": 0, "sites": {"a": {"steps": 7}, "b": {"steps": 3}}}],
    }
    s = job_settings(job, record, config)
    assert (s.data, s.batch, s.optimizer, s.epsilon, s.secure_sum_sites, s.k_fraction) == (
        data,
        batch,
        optimizer,
        epsilon,
        summed,
        k,
    )
    assert (s.local_steps, s.steps_site, s.source) == (3, "b", "config_fed_client.json")
    assert s.secure_sum_by == ("SecAgg+" if job.endswith("_secagg") else "HE")


def test_client_level_dp_on_the_server_is_noted_as_no_protection_from_the_server() -> None:
    config = json.loads((ROOT / "jobs/heart_client_dp/app/config/config_fed_client.json").read_text())
    server = json.loads((ROOT / "jobs/heart_client_dp/app/config/config_fed_server.json").read_text())
    s = job_settings("heart_client_dp", {"rounds": []}, config, server)
    assert s.epsilon is None and "not the updates from the server" in s.notes[0]


def test_the_report_markdown_holds_the_figures_next_to_epsilon(audit: dict) -> None:
    ledger = {
        "epsilon": 4.2,
        "delta": 1e-5,
        "noise_multiplier": 1.1,
        "max_grad_norm": 1.0,
        "sample_rate": 0.1,
    }
    site = {"n_train": 30, "n_test": 10, "steps": 2, "privacy": ledger}
    record = {"job_id": "j", "rounds": [{"round": 0, "sites": {"a": site}}], "failures": []}
    config = json.loads((ROOT / "jobs/heart_dp/app/config/config_fed_client.json").read_text())
    report = build_report("heart_dp", record, {}, client_config=config, audit=AUDIT)
    assert report["attack_figures"]["run_epsilon"] == {"epsilon": 4.2, "delta": 1e-5, "source": "DP-SGD"}
    md = to_markdown(report)
    dp, attacks = md.index("## Differential privacy (DP-SGD at each site)"), md.index(ATTACK_HEADING)
    assert dp < attacks and "## Privacy\n" not in md
    assert "ε of this run: 4.200 at δ 1e-05 (DP-SGD, the largest over sites)." in md
    assert (
        "| DP-SGD ε=5 | batch 16, 1 local step, sgd, dp_eps8 | no | 0.10 | 0.00 | "
        "loss_threshold 0.51, lira 0.52 |" in md
    )
    assert "| site floor (batch 16) | batch 16, 1 local step, sgd, none | – | 0.33 | 0.00 | – |" in md
    assert "Audited at ε=8, this job ε=5: the weaker audited setting." in md


def test_the_report_of_a_downloaded_result_reads_the_config_it_ran(tmp_path: Path) -> None:
    result = tmp_path / "result"
    shutil.copytree(RESULT, result)
    app = result / "workspace" / "app_server" / "config"
    app.mkdir(parents=True)
    shutil.copy(ROOT / "jobs/heart_fedprox/app/config/config_fed_client.json", app)
    report, _ = report_job_result(result, tmp_path / "out", audit=AUDIT)
    section = report["attack_figures"]
    assert section["settings"]["batch"] == 16 and section["settings"]["local_steps"] == 2
    assert section["settings"]["steps_site"] == "switzerland"
    (match,) = section["matches"]
    assert (match["row"]["batch"], match["row"]["local_steps"], match["figures"]["recovered_fraction"]) == (
        16,
        1,
        0.329,
    )
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["attack_figures"]["matches"][0]["figures"] == match["figures"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "This job (settings from config_fed_client.json): heart data, batch 16, 2 local steps" in md
    assert "ε of this run: none (no site reported a DP-SGD or DPUpdate ledger in the run record)." in md


def test_without_a_config_the_record_alone_gives_the_settings(tmp_path: Path) -> None:
    report, _ = report_job_result(RESULT, tmp_path / "out", audit=tmp_path / AUDIT_FILE)
    settings = report["attack_figures"]["settings"]
    assert (settings["data"], settings["batch"], settings["local_steps"], settings["source"]) == (
        "heart",
        None,
        2,
        "the run record",
    )
    assert "run `make bench-privacy-attacks`" in (tmp_path / "out" / "report.md").read_text()


def test_nearest_row_needs_the_data_kind(audit: dict) -> None:
    assert nearest_row(audit["inversion"], JobSettings(None), "none") == (None, False)


def test_the_report_command_takes_the_audit(tmp_path: Path) -> None:
    result = tmp_path / "result"
    shutil.copytree(RESULT, result)
    assert main(["report", str(result), "--audit", str(AUDIT)]) == 0
    saved = json.loads((result / "report" / "report.json").read_text())["attack_figures"]
    assert saved["available"] is True and saved["audit"] == str(AUDIT)
    assert saved["matches"][0]["row"]["batch"] == 1  # no config in this result: batch unknown, the smallest


def test_the_submitted_job_config_is_read_when_the_server_kept_no_copy(tmp_path: Path) -> None:
    result = tmp_path / "result"
    shutil.copytree(RESULT, result)
    shutil.copytree(ROOT / "jobs/heart_he/app", result / "job" / "heart_he" / "app")  # download_job's job/
    report, _ = report_job_result(result, tmp_path / "out", audit=AUDIT)
    (match,) = report["attack_figures"]["matches"]
    assert (match["job_protection"], match["protection"], match["exact"]) == (
        "HE: the server sees the sum of 4 sites",
        "secure_sum4",
        False,
    )
