"""The non-IID and server-optimizer jobs in real FLARE POC federations: SCAFFOLD (FLARE's
ScatterAndGatherScaffold with fedhealth's site executor), FedYogi and FedAdam (fedhealth's FedOpt
shareable generator), Ditto, and server-side client-level DP (DP-FedAvg).

These five run one after the other on one federation, started once, for a few rounds each. Every
site must report every round; all but DP-FedAvg must improve on their initial model at every site;
Ditto's sites must report their personal model's metrics, SCAFFOLD's sites their control-variate
step through FLARE's collection aggregator, FedAdam's server its Adam steps, DP-FedAvg's server its
privacy ledger. The clustered job groups the hospitals by the region each declares in its own site
config and trains one model per group (its own federation: it changes the sites' settings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedhealth.client.scaffold import CONTROL_NORM
from fedhealth.constants import CLIENT_DP_LEDGER_FILE, CLUSTERS_FILE, HEART_SITES, SITE_CONFIG_FILE
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.demo import run_job, run_on
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.variants import heart_poc, job_variant
from fedhealth_tools.poc.workspace import PocError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
# (job, per-round site metrics every site must report)
JOBS = [
    ("heart_scaffold", {"train_loss", "global_loss", CONTROL_NORM}),
    ("heart_fedyogi", {"train_loss", "global_loss"}),
    ("heart_fedadam", {"train_loss", "global_loss"}),
    ("heart_ditto", {"personal_accuracy", "personal_loss", "global_accuracy"}),
    ("heart_client_dp", {"train_loss", "global_loss"}),
]
NOISY = {"heart_client_dp"}  # DP noise on the aggregate: three rounds need not improve every site
REGION = {"cleveland": "us", "va_long_beach": "us", "hungary": "europe", "switzerland": "europe"}


def _round_metrics(record: dict) -> list[dict]:
    """Every site's metrics of every round in the run record."""
    return [metrics for entry in record["rounds"] for metrics in entry["sites"].values()]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """job -> its downloaded result folder, or the PocError it ended with; one federation for all."""
    workspace = tmp_path_factory.mktemp("ws")
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    out: dict = {}
    with PocProcesses(layout, workspace / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            for job, _ in JOBS:
                job_dir = job_variant(ROOT / "jobs" / job, workspace / "jobs" / job, rounds=ROUNDS)
                try:
                    out[job] = run_on(
                        admin, layout, job_dir, workspace=workspace, timeout=300, check=procs.check_alive
                    )
                except PocError as e:
                    out[job] = e
    yield out


def _result(results: dict, job: str) -> Path:
    if isinstance(results[job], Exception):
        raise results[job]
    return results[job]


@pytest.mark.parametrize(("job", "metrics"), JOBS)
def test_noniid_job_runs_and_improves_every_site(results: dict, job: str, metrics: set[str]) -> None:
    record, cross = find_run_files(_result(results, job))
    report = build_report(job, record, cross)
    assert report["rounds"] == ROUNDS and report["failures"] == []
    assert sorted(s["name"] for s in report["sites"]) == sorted(HEART_SITES)
    if job not in NOISY:
        for site in report["sites"]:
            assert site["loss"] < site["initial"]["loss"], site["name"]
    personal = report["personal_vs_global"]  # only Ditto's sites keep a personal model
    assert (sorted(personal) if personal else None) == (sorted(HEART_SITES) if job == "heart_ditto" else None)
    rows = _round_metrics(record)
    assert len(rows) == ROUNDS * len(HEART_SITES)
    for row in rows:
        assert metrics <= set(row), sorted(row)


def test_fedadam_server_takes_one_adam_step_a_round(results: dict) -> None:
    logs = "".join(p.read_text(errors="replace") for p in _result(results, "heart_fedadam").rglob("log.txt"))
    assert logs.count("adam server step on an averaged update of norm") == ROUNDS


def test_client_dp_server_ledger_accounts_every_round(results: dict) -> None:
    (path,) = list(_result(results, "heart_client_dp").rglob(CLIENT_DP_LEDGER_FILE))
    ledger = json.loads(path.read_text())
    assert [e["round"] for e in ledger] == list(range(ROUNDS))
    assert all(e["sites"] == sorted(HEART_SITES) and e["clip_norm"] == 0.25 for e in ledger)
    eps = [e["epsilon"] for e in ledger]
    assert eps == sorted(eps) and eps[0] > 0 and eps[-1] < 10.0  # noise sized for the job's 19 rounds
    assert ledger[0]["noise_multiplier"] > 0 and ledger[0]["delta"] == 0.001


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
