"""``fedhealth report <downloaded job result>`` on a real job result (the files a POC run downloaded).

``data/heart_fedprox_result`` holds the report inputs of a ``heart_fedprox`` run in POC (four
hospitals, 19 rounds) exactly as ``download_job_result`` wrote them: the run record, FLARE's
cross-site results and the job's ``meta.json``. Aggregates only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedhealth.reports.job_result import read_job_result, report_job_result, summary_text
from fedhealth.reports.run_record import NEVER_STARTED
from fedhealth_tools.cli import main

RESULT = Path(__file__).parent / "data" / "heart_fedprox_result"
JOB_ID = "995e77bd-ab92-49d2-9b14-5f9800c78cc4"
GLOBAL_MODEL = "SRV_FL_global_model.pt"
AUC_NOTE = "AUC = size-weighted mean of site AUCs (weights: test sizes), not a pooled AUC."


@pytest.fixture
def result(tmp_path: Path) -> Path:
    copy = tmp_path / JOB_ID
    shutil.copytree(RESULT, copy)
    return copy


def _cross() -> dict:
    return json.loads((RESULT / "workspace" / "cross_site_val" / "cross_val_results.json").read_text())


def test_report_of_a_downloaded_result_matches_its_inputs(result: Path, tmp_path: Path) -> None:
    report, paths = report_job_result(result, tmp_path / "out")
    assert report["job"] == "heart_fedprox" and report["job_id"] == JOB_ID
    assert report["rounds"] == 19 and report["status"] == "finished" and report["failures"] == []
    cross = _cross()
    final = {site: models[GLOBAL_MODEL] for site, models in cross.items()}
    sizes = {s["name"]: s["n_test"] for s in report["sites"]}
    assert sizes == {"cleveland": 104, "hungary": 89, "switzerland": 16, "va_long_beach": 45}
    expected_auc = sum(final[s]["auc"] * n for s, n in sizes.items()) / sum(sizes.values())
    expected_acc = sum(final[s]["accuracy"] * n for s, n in sizes.items()) / sum(sizes.values())
    assert report["global"]["auc"] == pytest.approx(expected_auc)
    assert report["global"]["accuracy"] == pytest.approx(expected_acc)
    assert report["global"]["auc_label"] == "size-weighted mean of site AUCs"
    assert report["eval_split"] == "test"  # a heart record: rounds score the received model on test
    assert report["deploy_decision"] in ("DEPLOY", "DO NOT DEPLOY")
    assert [p.name for p in paths] == [
        "report.json",
        "report.md",
        "rounds.png",
        "site_metrics.png",
        "site_curves.png",
        "cross_site.png",
        "model_card.md",
        "model_card.json",
    ]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "# fedhealth run report: heart_fedprox" in markdown and AUC_NOTE in markdown
    text = summary_text(report)
    assert AUC_NOTE in text
    assert f"{report['gate']['decision']} (deciding site: {report['gate']['deciding_site']})" in text


def test_the_command_writes_the_report_next_to_the_result(result: Path, capsys) -> None:
    assert main(["report", str(result)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# heart_fedprox (job {JOB_ID}, 19 rounds)")
    assert "| **global** | 486 | 254 |" in out and "flagged sites: none" in out
    saved = json.loads((result / "report" / "report.json").read_text())
    assert saved["job"] == "heart_fedprox" and len(saved["sites"]) == 4


def test_a_folder_without_a_run_record_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nowhere")]) == 1
    assert "nowhere: no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no fedhealth_run.json under .*empty"):
        read_job_result(tmp_path / "empty")


def test_a_failed_site_and_the_abort_are_in_the_summary(result: Path, tmp_path: Path) -> None:
    path = result / "workspace" / "fedhealth_run.json"
    record = json.loads(path.read_text())
    reason = NEVER_STARTED.format(job_id=JOB_ID)
    record["failures"] = [{"site": "switzerland", "task": None, "round": 0, "reason": reason}]
    record["status"], record["abort_reason"] = "aborted", "the server stopped the run"
    path.write_text(json.dumps(record))
    report, _ = report_job_result(result, tmp_path / "out")
    text = summary_text(report)
    assert "the run was aborted: the server stopped the run" in text
    assert f"- switzerland (no task ran): {reason}" in text
    assert f"- switzerland (no task ran): {reason}" in (tmp_path / "out" / "report.md").read_text()
