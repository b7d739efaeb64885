"""The chest X-ray job end to end in FLARE POC mode on DICOM files converted from PneumoniaMNIST.

A real server and four real site processes with mTLS; each site reads only its own DICOM folder,
quarantines its broken files and trains on the rest. Slow (about two minutes); marked ``slow``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psutil
import pytest
from pydicom.data import get_testdata_file

from fedhealth import constants as C
from fedhealth.imaging.site import CXR_DATASET_DIR
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.imaging.converter import medmnist_file
from fedhealth_tools.poc.cxr_data import write_cxr_data
from fedhealth_tools.poc.demo import run_job
from fedhealth_tools.poc.processes import free_port
from fedhealth_tools.poc.variants import job_variant, project_on_port
from fedhealth_tools.poc.workspace import prepare_workspace

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 2
LIMIT = 400  # images per split over all four sites
# ~100 training images a site: more local work a round than the job's default (one epoch, batches of 64)
LOCAL = {"local_epochs": 4, "batch_size": 16}
BROKEN_SITE = "hungary"


def _flare_processes() -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if "fedhealth_cxr_ws" in " ".join(p.info.get("cmdline") or [])
    ]


def test_poc_cxr_fedprox_on_converted_dicom_sites(tmp_path: Path) -> None:
    npz = medmnist_file("pneumoniamnist")  # bundled with fedhealth-tools
    workspace = tmp_path / "fedhealth_cxr_ws"
    layout = prepare_workspace(
        project_on_port(ROOT / "provision" / "poc.yml", workspace / "project.yml", free_port()),
        workspace / "poc",
    )
    manifest = write_cxr_data(layout, npz, alpha=1.0, seed=0, limit=LIMIT)
    train_dir = layout.kit(BROKEN_SITE) / "data" / CXR_DATASET_DIR / "train"
    shutil.copy(get_testdata_file("test-SR.dcm"), train_dir / "report.dcm")  # a structured report
    (train_dir / "export.dcm").write_bytes(b"\0" * 200)  # garbage
    job = job_variant(
        ROOT / "jobs" / "cxr_fedprox", tmp_path / "jobs" / "cxr_fedprox", rounds=ROUNDS, executor_args=LOCAL
    )
    result = run_job(layout, job, workspace=workspace, timeout=400)
    record, cross = find_run_files(result)
    report = build_report(job.name, record, cross)
    assert report["rounds"] == ROUNDS
    sizes = {s["name"]: s["n_train"] for s in report["sites"]}
    assert sizes == {site: info["counts"]["train"]["n"] for site, info in manifest["sites"].items()}
    last = record["rounds"][-1]["sites"]
    assert last[BROKEN_SITE][C.M_N_QUARANTINED] == 2 and last["cleveland"][C.M_N_QUARANTINED] == 0
    for site in report["sites"]:  # the per-site report of the heart jobs applies unchanged
        auc = site["metrics"]["auc"]
        assert auc["lo"] <= auc["value"] <= auc["hi"] and site["deploy"] in ("DEPLOY", "DO NOT DEPLOY")
        assert 0.0 <= site["auc"] <= 1.0 and site["n_test"] > 0
    assert report["global"]["auc"] > 0.75  # two short rounds on ~400 images
    assert all(len(models) == 5 for models in report["cross_site"].values())
    quarantine = json.loads(next(layout.kit(BROKEN_SITE).rglob(C.QUARANTINE_REPORT_FILE)).read_text())
    assert quarantine["train"]["quarantine"]["counts"] == {"non_image_object": 1, "unreadable": 1}
    assert _flare_processes() == []
