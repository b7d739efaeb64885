"""The non-IID jobs in real FLARE POC federations: SCAFFOLD (FLARE's ScatterAndGatherScaffold with
fedhealth's site executor), FedYogi (fedhealth's FedOpt shareable generator) and Ditto.

Each runs a few rounds on the four hospitals and must improve on its initial model at every site;
Ditto's sites must report their personal model's metrics, SCAFFOLD's sites their control-variate
step through FLARE's collection aggregator. The clustered job groups the hospitals by the region
each declares in its own site config and trains one model per group.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.constants import CLUSTERS_FILE, HEART_SITES, SITE_CONFIG_FILE
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.poc.demo import run_job
from fedhealth_tools.poc.variants import heart_poc, job_variant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
# (job, per-round site metrics every site must report)
JOBS = [
    ("heart_scaffold", {"train_loss", "global_loss"}),
    ("heart_fedyogi", {"train_loss", "global_loss"}),
    ("heart_ditto", {"personal_accuracy", "personal_loss", "global_accuracy"}),
]
REGION = {"cleveland": "us", "va_long_beach": "us", "hungary": "europe", "switzerland": "europe"}


def _round_metrics(record: dict) -> list[dict]:
    """Every site's metrics of every round in the run record."""
    return [metrics for entry in record["rounds"] for metrics in entry["sites"].values()]


@pytest.mark.parametrize(("job", "metrics"), JOBS)
def test_noniid_job_runs_and_improves_every_site(tmp_path: Path, job: str, metrics: set[str]) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    job_dir = job_variant(ROOT / "jobs" / job, tmp_path / "jobs" / job, rounds=ROUNDS)
    result = run_job(layout, job_dir, workspace=workspace, timeout=300)
    record, cross = find_run_files(result)
    report = build_report(job, record, cross)
    assert report["rounds"] == ROUNDS
    assert sorted(s["name"] for s in report["sites"]) == sorted(HEART_SITES)
    for site in report["sites"]:
        assert site["loss"] < site["initial"]["loss"], site["name"]
    personal = report["personal_vs_global"]  # only Ditto's sites keep a personal model
    assert (sorted(personal) if personal else None) == (sorted(HEART_SITES) if job == "heart_ditto" else None)
    rows = _round_metrics(record)
    assert len(rows) == ROUNDS * len(HEART_SITES)
    for row in rows:
        assert metrics <= set(row), sorted(row)


def test_clustered_job_trains_one_model_per_declared_region(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    for site in layout.sites:  # each hospital declares its region in its own site config
        path = layout.kit(site) / "local" / SITE_CONFIG_FILE
        path.write_text(json.dumps({**json.loads(path.read_text()), "metadata": {"region": REGION[site]}}))
    job_dir = job_variant(
        ROOT / "jobs" / "heart_clustered", tmp_path / "jobs" / "heart_clustered", rounds=ROUNDS
    )
    server = job_dir / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    (controller,) = [w for w in config["workflows"] if w["id"] == "clustered"]
    controller["args"].update(cluster_by=["region"], split_round=1)
    server.write_text(json.dumps(config))
    result = run_job(layout, job_dir, workspace=workspace, timeout=300)
    (clusters_file,) = list(Path(result).rglob(CLUSTERS_FILE))
    groups = [["cleveland", "va_long_beach"], ["hungary", "switzerland"]]
    assert json.loads(clusters_file.read_text())["rounds"] == [groups] * ROUNDS
    record, _ = find_run_files(result)
    first, last = record["rounds"][0]["sites"], record["rounds"][-1]["sites"]
    for site in HEART_SITES:  # the model each site receives (its cluster's) improves on its data
        assert last[site]["global_loss"] < first[site]["global_loss"], site
