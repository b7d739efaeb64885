"""The demo's data step: which task a job names, and the data it places (or the reason it cannot)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedhealth.constants import SITE_CONFIG_FILE
from fedhealth.imaging.site import CXR_DATASET_DIR
from fedhealth_tools.poc.task_data import job_task, place_task_data
from fedhealth_tools.poc.workspace import PocError, PocLayout

JOBS_DIR = Path(__file__).resolve().parents[3] / "jobs"
# job -> the task its sites train on
TASKS = {
    "heart_fedavg": "tabular",
    "heart_he": "tabular",
    "cxr_fedavg": "dicom",
    "cxr_topk": "dicom",
    "cxr_he": "dicom",
}
SITES = ("north", "south", "east", "west")


def _layout(tmp_path: Path) -> PocLayout:
    for site in SITES:
        (tmp_path / "prod" / site / "local").mkdir(parents=True)
    return PocLayout(tmp_path, tmp_path / "prod", "server", "admin", SITES, 0)


def _job_with_task(tmp_path: Path, task: str) -> Path:
    job = tmp_path / "job"
    shutil.copytree(JOBS_DIR / "cxr_fedavg", job)
    path = job / "app" / "config" / "config_fed_client.json"
    config = json.loads(path.read_text())
    config["executors"][0]["executor"]["args"]["task"] = task
    path.write_text(json.dumps(config))
    return job


@pytest.mark.parametrize(("job", "task"), TASKS.items())
def test_the_task_comes_from_the_jobs_client_config(job: str, task: str) -> None:
    assert job_task(JOBS_DIR / job)[0] == task


def test_a_task_without_demo_data_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(PocError, match=r"trains task 'toy'; the demo has data for heart, dicom"):
        place_task_data(_layout(tmp_path), _job_with_task(tmp_path, "toy"))


def test_a_folder_without_a_site_executor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PocError, match="no app config names fedhealth.executors.site_executor.SiteExecutor"):
        job_task(tmp_path)


def test_dicom_sites_get_their_own_converted_images(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    stale = layout.kit("north") / "data" / CXR_DATASET_DIR / "train" / "old.dcm"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier demo")
    task, summary = place_task_data(layout, JOBS_DIR / "cxr_fedavg", images=400)
    assert task == "dicom" and summary.count("+") == 2 * len(SITES)
    assert not stale.exists()  # a new subset replaces the earlier one
    for site in SITES:
        settings = json.loads((layout.kit(site) / "local" / SITE_CONFIG_FILE).read_text())
        assert settings["data_root"] == "data"
        assert len(list((layout.kit(site) / "data" / CXR_DATASET_DIR / "test").glob("*.dcm"))) >= 10


def test_too_few_images_name_the_short_sites_and_the_option(tmp_path: Path) -> None:
    with pytest.raises(PocError) as info:
        place_task_data(_layout(tmp_path), JOBS_DIR / "cxr_fedavg", images=40)
    message = str(info.value)
    assert message.startswith("40 images per split leave sites too few (") and "--images" in message
    assert "train 4 < 16" in message  # 40 images dealt over four sites (alpha 1, seed 0): 24, 5, 7, 4


def test_a_site_with_its_own_data_is_left_alone_and_named(tmp_path: Path) -> None:
    layout = _layout(tmp_path)
    (layout.kit("south") / "local" / SITE_CONFIG_FILE).write_text(json.dumps({"data_root": "/srv/pacs"}))
    with pytest.raises(PocError, match=r"sites point at their own data: south \(/srv/pacs\)"):
        place_task_data(layout, JOBS_DIR / "cxr_fedavg")
