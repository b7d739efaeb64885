"""A Flower app under FLARE in POC: the heart FedProx app run by FLARE's Flower integration.

Real processes: the FLARE server and four sites on ``.venv-flower``'s Python, FLARE starting Flower's
SuperLink and each site's SuperNode, the FAB relayed through FLARE and checked by each site
(:class:`fedhealth.executors.flower_site_executor.FlowerSiteExecutor`). One federation, two jobs:
the app every site lists (2 rounds, the kit's per-site report from its results), then the same job
after Cleveland stopped listing the app (Cleveland refuses the FAB and says why). Slow; skipped
without ``.venv-flower``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from fedhealth.constants import HEART_SITES
from fedhealth.reports.job_result import report_job_result
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.demo import run_on
from fedhealth_tools.poc.flower import FLOWER_PYTHON, HEART_CLIENTAPP, allow_clientapps, install_server_app
from fedhealth_tools.poc.processes import PocProcesses, free_port
from fedhealth_tools.poc.status import site_error_lines
from fedhealth_tools.poc.variants import job_variant, project_on_port
from fedhealth_tools.poc.workspace import prepare_workspace, write_heart_rows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not FLOWER_PYTHON.is_file(), reason=".venv-flower is missing (make .venv-flower/.installed)"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 2
# FLamby's complete cases per hospital, train and test (write_heart_rows).
SIZES = {"cleveland": (199, 104), "hungary": (172, 89), "switzerland": (30, 16), "va_long_beach": (85, 45)}
# A site whose job process stopped (the refusing one) is given up after this many seconds; the job,
# which needs all four sites, then ends (FLARE's dead_client_grace_period, 60 s by default).
DEAD_SITE_GRACE_S = 5


def _flower_processes(marker: str, wait_s: float = 0.0) -> list[psutil.Process]:
    """Flower and FLARE processes of this test (by command line or working folder) still alive after
    ``wait_s`` (a SuperNode's supervisor ends it within its grace once the job process is gone)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
            cmd = " ".join(proc.info.get("cmdline") or [])
            cwd = proc.info.get("cwd") or ""
            ours = marker in cmd or cwd.startswith(marker)
            kind = any(k in cmd for k in ("flower-", "flwr", "sub_start", "fedhealth.flower.supervise"))
            if ours and kind and proc.info.get("status") != psutil.STATUS_ZOMBIE:
                found.append(proc)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_flower_app_under_flare_reports_every_site_and_refuses_unlisted_app(tmp_path: Path) -> None:
    started = time.monotonic()
    workspace = tmp_path / "flower_ws"
    project = project_on_port(ROOT / "provision" / "poc.yml", tmp_path / "project.yml", free_port())
    layout = prepare_workspace(project, workspace / "poc", fresh=True)
    write_heart_rows(layout)
    install_server_app(layout)
    allow_clientapps(layout, [HEART_CLIENTAPP])
    job = job_variant(
        ROOT / "jobs" / "heart_flower",
        tmp_path / "jobs" / "heart_flower",
        rounds=ROUNDS,
        dead_client_grace_s=DEAD_SITE_GRACE_S,
    )
    with PocProcesses(layout, workspace / "logs", python=FLOWER_PYTHON) as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            result = run_on(admin, layout, job, workspace=workspace, timeout=240, check=procs.check_alive)
            ran = time.monotonic() - started

            # Cleveland now lists another ClientApp only: the same job's FAB is refused there.
            allow_clientapps(layout, ["other.module:client_app"], sites=("cleveland",))
            job_id = admin.submit(job, workspace / "submit")
            status = admin.follow(job_id, on_progress=lambda _: None, check=procs.check_alive, timeout=120)
            refused_at = time.monotonic() - started - ran
            errors = site_error_lines(layout, job_id)
            logs = {site: (layout.kit(site) / job_id / "log.txt").read_text() for site in layout.sites}
    assert _flower_processes(str(workspace), wait_s=30) == []
    total = time.monotonic() - started

    report, paths = report_job_result(result, tmp_path / "results", seconds=ran)
    record = json.loads(next(result.rglob("fedhealth_run.json")).read_text())
    assert record["status"] == "finished" and record["num_rounds"] == ROUNDS
    assert [r["round"] for r in record["rounds"]] == [0, 1] and record["completed_rounds"] == [0, 1]
    assert all(t["done"] > t["started"] for t in record["round_times"])
    assert report["rounds"] == ROUNDS
    assert {s["name"]: (s["n_train"], s["n_test"]) for s in report["sites"]} == SIZES
    for rnd in record["rounds"]:
        assert sorted(rnd["sites"]) == sorted(HEART_SITES)
        for site, metrics in rnd["sites"].items():
            assert metrics["round"] == rnd["round"] and metrics["train_loss"] > 0, site
            assert (metrics["n_train"], metrics["n_test"]) == SIZES[site]
    saved = json.loads((tmp_path / "results" / "report.json").read_text())
    assert saved["global"]["model"] == "SRV_flower_global_model"
    assert 0.5 < saved["global"]["accuracy"] <= 1.0
    for site in saved["sites"]:
        assert 0.0 <= site["accuracy"] <= 1.0 and site["loss"] > 0, site["name"]
        auc = site["metrics"]["auc"]
        if site["name"] != "switzerland":
            assert auc["lo"] <= auc["value"] <= auc["hi"], site["name"]
    # Switzerland's test split has 3 negative patients: the site withholds its AUC, as in the FLARE jobs.
    switzerland = next(s for s in saved["sites"] if s["name"] == "switzerland")
    assert switzerland["metrics"]["auc"]["value"] is None and switzerland["deploy"] == "DO NOT DEPLOY"
    assert saved["deploy_decision"] == "DO NOT DEPLOY"
    assert len(saved["curves"]["cleveland"]["train_loss"]) == ROUNDS
    markdown = (tmp_path / "results" / "report.md").read_text()
    assert all(site in markdown for site in HEART_SITES)
    assert {p.name for p in paths} >= {"report.json", "report.md"}

    # The second job: Cleveland refused the FAB before its SuperNode saw it, the others accepted it.
    assert status != "FINISHED:COMPLETED"
    refusal = (
        "site cleveland refuses the Flower app fedhealth-heart-flower (FAB sha256 {sha}): its ClientApp "
        "'fedhealth.flower.heart_flower:client_app' is not one this site lists "
        "(['other.module:client_app']); "
        "a site runs only Flower apps installed at the site"
    )
    accepted = "accepts the Flower app fedhealth-heart-flower (FAB sha256 "
    sha = logs["hungary"].split(accepted)[1][:12]
    assert refusal.format(sha=sha) in logs["cleveland"] and accepted not in logs["cleveland"]
    assert all(accepted in logs[site] for site in ("hungary", "switzerland", "va_long_beach"))
    assert "cleveland" in errors and "refuses the Flower app" in errors["cleveland"]
    print(f"flower POC: first job {ran:.0f} s, refused job {refused_at:.0f} s, with shutdown {total:.0f} s")
