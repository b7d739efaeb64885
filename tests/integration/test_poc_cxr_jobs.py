"""cxr_dp, cxr_scaffold, cxr_ditto and cxr_topk end to end on one POC federation of DICOM sites.

One real server and four real site processes (mTLS), started once; the four jobs run one after the
other, each for two rounds, on the fewest converted PneumoniaMNIST images that leave every site the
jobs' ``min_images`` (placed by the demo's own data step). Each job must finish, every site must
report every round, and each algorithm must leave its mark: DP-SGD's privacy ledger, SCAFFOLD's
control variates, Ditto's personal metrics, top-k's fewer bytes. Then ``fedhealth demo --job
cxr_fedavg`` (a two-round copy) places the same small data and runs the job on its own federation.
Slow; marked ``slow``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fedhealth import constants as C
from fedhealth.client.scaffold import CONTROL_NORM
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.cli import main
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.demo import run_on
from fedhealth_tools.poc.processes import PocProcesses, free_port
from fedhealth_tools.poc.task_data import place_task_data
from fedhealth_tools.poc.variants import job_variant, project_on_port
from fedhealth_tools.poc.workspace import PocError, PocLayout, prepare_workspace

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 2
# Images per split over the four sites: with the demo's split (alpha 1, seed 0) 160 is the fewest
# (of 80, 100, 120, 160) that leaves every site 16 training images, the sites' default
# min_examples_per_round, and the jobs' min_images of 10 in val and test (21 to 65 a site).
IMAGES = 160
JOBS = ("cxr_dp", "cxr_scaffold", "cxr_ditto", "cxr_topk")
MARK = "fedhealth_cxrjobs_ws"  # in every FLARE process's command line: none may outlive the tests


def _flare_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if MARK in " ".join(p.info.get("cmdline") or [])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PocLayout, dict]]:
    """Each job's (record, report), or the PocError it ended with, from one federation."""
    workspace = tmp_path_factory.mktemp(MARK)
    project = project_on_port(ROOT / "provision" / "poc.yml", workspace / "project.yml", free_port())
    layout = prepare_workspace(project, workspace / "poc")
    task, _ = place_task_data(layout, ROOT / "jobs" / "cxr_fedavg", images=IMAGES)
    assert task == "dicom"
    out: dict = {}
    with PocProcesses(layout, workspace / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            for job in JOBS:
                variant = job_variant(ROOT / "jobs" / job, workspace / "jobs" / job, rounds=ROUNDS)
                try:
                    result = run_on(
                        admin, layout, variant, workspace=workspace, timeout=300, check=procs.check_alive
                    )
                except PocError as e:
                    out[job] = e
                    continue
                record, cross = find_run_files(result)
                out[job] = (record, build_report(job, record, cross))
    yield layout, out
    assert _flare_processes() == []


def _run(runs: tuple[PocLayout, dict], job: str) -> tuple[PocLayout, dict, dict]:
    layout, out = runs
    if isinstance(out[job], Exception):
        raise out[job]
    record, report = out[job]
    return layout, record, report


@pytest.mark.parametrize("job", JOBS)
def test_job_finishes_and_every_site_reports_every_round(runs, job: str) -> None:
    layout, record, report = _run(runs, job)
    assert report["rounds"] == ROUNDS and report["failures"] == [] and report["rejected_updates"] == []
    assert [sorted(entry["sites"]) for entry in record["rounds"]] == [sorted(layout.sites)] * ROUNDS
    for site in report["sites"]:  # the final global model scored on each site's test images
        assert site["n_test"] > 0 and 0.0 <= site["auc"] <= 1.0, site["name"]


def test_dp_sgd_ledger_spends_epsilon_every_round_within_the_target(runs) -> None:
    layout, record, report = _run(runs, "cxr_dp")
    privacy = report["privacy"]
    for site in layout.sites:
        eps = privacy["epsilon"][site]
        assert len(eps) == ROUNDS and None not in eps and eps == sorted(eps) and eps[0] > 0, site
        assert eps[-1] <= 5.0 + 1e-6, site  # the job's target_epsilon (noise sized for its 10 rounds)
        final = privacy["final"][site]
        assert final["rounds_trained"] == ROUNDS and 0 < final["delta"] < 0.1, site
    ledger = json.loads(next(layout.kit("hungary").rglob(C.DP_LEDGER_FILE)).read_text())
    assert [e["epsilon"] for e in ledger["entries"]] == pytest.approx(privacy["epsilon"]["hungary"])


def test_scaffold_sites_send_control_variates_every_round(runs) -> None:
    layout, record, _ = _run(runs, "cxr_scaffold")
    for entry in record["rounds"]:
        for site, metrics in entry["sites"].items():
            norm = metrics[CONTROL_NORM]  # |c_i| after the round: nonzero once a site has trained
            assert math.isfinite(norm) and norm > 0, (entry["round"], site)


def test_ditto_sites_report_their_personal_models(runs) -> None:
    layout, record, report = _run(runs, "cxr_ditto")
    for entry in record["rounds"]:
        for site, metrics in entry["sites"].items():
            assert 0.0 <= metrics["personal_accuracy"] <= 1.0 and metrics["personal_loss"] > 0, site
    assert sorted(report["personal_vs_global"]) == sorted(layout.sites)
    for site in layout.sites:  # the personal model stays in the site's own run folder
        assert next(layout.kit(site).rglob(C.PERSONAL_MODEL_FILE)).stat().st_size > 0, site


def test_topk_sites_send_fewer_bytes_than_their_raw_updates(runs) -> None:
    layout, record, report = _run(runs, "cxr_topk")
    comm = report["communication"]
    # The topk algorithm chose the entries and kept the error; the filter only encoded them.
    assert comm["modes"] == ["topk 0.1 +EF"] and set(comm["sites"]) == set(layout.sites)
    for entry in record["rounds"]:  # error feedback: what was not sent waits for the next round
        for site, metrics in entry["sites"].items():
            assert metrics["ef_residual_norm"] > 0, (entry["round"], site)
    for site, row in comm["sites"].items():
        assert row["rounds"] == ROUNDS, site
        assert row[C.M_BYTES_SENT] < row[C.M_BYTES_RAW] / 2, site  # 10% of 105k weights, float16


def test_demo_runs_the_shipped_cxr_fedavg_job_with_bundled_dicom_data(runs, tmp_path: Path) -> None:
    workspace = tmp_path / MARK
    project = project_on_port(ROOT / "provision" / "poc.yml", tmp_path / "project.yml", free_port())
    # The shipped job with fewer rounds (its 20 rounds add two minutes to CI, not coverage).
    job = job_variant(ROOT / "jobs" / "cxr_fedavg", tmp_path / "jobs" / "cxr_fedavg", rounds=ROUNDS)
    argv = ["demo", "--job", str(job), "--project", str(project)]
    argv += ["--workspace", str(workspace), "--results", str(tmp_path / "results"), "--images", str(IMAGES)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "results" / "report.json").read_text())
    assert report["job"] == "cxr_fedavg" and report["rounds"] == ROUNDS
    assert sorted(s["name"] for s in report["sites"]) == [
        "cleveland",
        "hungary",
        "switzerland",
        "va_long_beach",
    ]
    assert sum(s["n_train"] for s in report["sites"]) == IMAGES
    assert report["deploy_decision"] in ("DEPLOY", "DO NOT DEPLOY")
    assert (tmp_path / "results" / "rounds.png").read_bytes()[:4] == b"\x89PNG"
    assert _flare_processes() == []
