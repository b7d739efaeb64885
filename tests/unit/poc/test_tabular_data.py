"""The demo's data for task "tabular": each POC site's own export and mapping, by the job's dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedhealth.constants import HEART_SITES, SITE_CONFIG_FILE
from fedhealth_tools.poc.task_data import place_task_data
from fedhealth_tools.poc.workspace import PocError, PocLayout

JOBS_DIR = Path(__file__).resolve().parents[3] / "jobs"
# dataset -> (the summary the demo prints, a header the va_long_beach export starts with)
DATASETS = {
    "indo_rct": ("cleveland 114+50, hungary 289+124, switzerland 15+7, va_long_beach 2+1", "id,site,age,"),
    "heart_disease": (
        "cleveland 199+104, hungary 193+101, switzerland 80+43, va_long_beach 131+69",
        "patient_id,site_name,age,",
    ),
}


def _layout(tmp_path: Path, sites: tuple[str, ...] = HEART_SITES) -> PocLayout:
    for site in sites:
        (tmp_path / "prod" / site / "local").mkdir(parents=True)
    return PocLayout(tmp_path, tmp_path / "prod", "server", "admin", sites, 0)


def _job(tmp_path: Path, dataset: str) -> Path:
    job = tmp_path / "job"
    shutil.copytree(JOBS_DIR / "indo_rct_fedavg", job)
    path = job / "app" / "config" / "config_fed_client.json"
    config = json.loads(path.read_text())
    config["executors"][0]["executor"]["args"]["task_args"]["dataset"] = dataset
    path.write_text(json.dumps(config))
    return job


@pytest.mark.parametrize(("dataset", "expected"), DATASETS.items())
def test_each_site_gets_its_export_and_mapping(
    tmp_path: Path, dataset: str, expected: tuple[str, str]
) -> None:
    summary, header = expected
    layout = _layout(tmp_path)
    stale = layout.kit("hungary") / "data" / dataset / "old.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier demo")
    assert place_task_data(layout, _job(tmp_path, dataset)) == ("tabular", summary)
    assert not stale.exists()
    for site in HEART_SITES:
        folder = layout.kit(site) / "data" / dataset
        assert sorted(p.name for p in folder.iterdir()) == ["mapping.json", "test.csv", "train.csv"]
        settings = json.loads((layout.kit(site) / "local" / SITE_CONFIG_FILE).read_text())
        assert settings["data_root"] == "data"
    assert (layout.kit("va_long_beach") / "data" / dataset / "train.csv").read_text().startswith(header)


def test_an_unknown_dataset_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(
        PocError, match=r"tabular dataset is 'mimic'; the demo has data for heart_disease, indo_rct"
    ):
        place_task_data(_layout(tmp_path), _job(tmp_path, "mimic"))


def test_sites_that_are_not_the_demo_sites_are_named(tmp_path: Path) -> None:
    with pytest.raises(PocError, match=r"project sites \['north'\] are not the demo's sites"):
        place_task_data(_layout(tmp_path, ("north",)), _job(tmp_path, "indo_rct"))
