"""A second real table by configuration only: the indo_rct trial (medicaldata) on a POC federation.

One real server and four real site processes (mTLS). Each site gets one trial centre's export and its
own ``mapping.json`` (placed by the demo's data step); the job is generated from
``job_specs/indo_rct.json`` and a data dictionary, with no Python of its own. The two small centres
(15 and 2 training patients) decline the alignment (a site releases nothing about fewer patients
than its ``min_examples_per_round``, 16) and the job goes on with the other two, as ``min_clients``
allows. What
the server received is checked: small-cell-suppressed counts and sums, nothing else. Slow; marked ``slow``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fedhealth import constants as C
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth.workflows.ehr_alignment_controller import PROFILES_FILE
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.demo import run_on
from fedhealth_tools.poc.processes import PocProcesses, free_port
from fedhealth_tools.poc.task_data import place_task_data
from fedhealth_tools.poc.variants import job_variant, project_on_port
from fedhealth_tools.poc.workspace import prepare_workspace

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JOB = "indo_rct_fedavg"
ROUNDS = 3
SMALL_SITES = ["switzerland", "va_long_beach"]  # centres 3_UK and 4_Case: 15 and 2 training patients
MARK = "fedhealth_ehr_ws"


def _flare_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if MARK in " ".join(p.info.get("cmdline") or [])]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    workspace = tmp_path_factory.mktemp(MARK)
    project = project_on_port(ROOT / "provision" / "poc.yml", workspace / "project.yml", free_port())
    layout = prepare_workspace(project, workspace / "poc")
    task, summary = place_task_data(layout, ROOT / "jobs" / JOB)
    assert task == "tabular"
    variant = job_variant(ROOT / "jobs" / JOB, workspace / "jobs" / JOB, rounds=ROUNDS)
    with PocProcesses(layout, workspace / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            result = run_on(admin, layout, variant, workspace=workspace, timeout=300, check=procs.check_alive)
    yield layout, result
    assert _flare_processes() == []


def test_indo_rct_runs_from_a_spec_and_mappings_and_the_small_centres_decline(run) -> None:
    layout, result = run
    record, cross = find_run_files(result)
    report = build_report(JOB, record, cross)
    assert report["rounds"] == ROUNDS
    trained = [sorted(entry["sites"]) for entry in record["rounds"]]
    assert trained == [sorted(s for s in layout.sites if s not in SMALL_SITES)] * ROUNDS
    declined = [f for f in record["failures"] if f["task"] == C.TASK_EHR_PROFILE]
    assert sorted(f["site"] for f in declined) == SMALL_SITES
    for failure in declined:
        assert "small cell, below this site's min_examples_per_round 16" in failure["reason"], failure
    for site in report["sites"]:
        if site["name"] not in SMALL_SITES:
            assert site["n_test"] > 0 and 0.0 <= site["auc"] <= 1.0, site


def test_the_server_received_only_suppressed_counts_and_aligned_the_dictionary(run) -> None:
    layout, result = run
    schema = json.loads(next(result.rglob(C.EHR_SCHEMA_FILE)).read_text())
    profiles = json.loads(next(result.rglob(PROFILES_FILE)).read_text())
    spec = json.loads((ROOT / "job_specs" / "dictionaries" / "indo_rct.json").read_text())
    dictionary = DataDictionary.from_dict(spec)
    assert sorted(profiles) == sorted(s for s in layout.sites if s not in SMALL_SITES)
    assert schema["dictionary"] == dictionary.fingerprint()
    assert sorted(schema["sites"]) == sorted(profiles)
    kept = [f["name"] for f in schema["features"]] + [d["name"] for d in schema["dropped"]]
    assert sorted(kept) == sorted(dictionary.names)
    assert len(schema["columns"]) == len(schema["mean"]) == len(schema["std"]) > 0
    for site, profile in profiles.items():
        assert set(profile) == {"dictionary", "rows", "min_cell", "features", "problems"}, site
        for name, entry in profile["features"].items():
            counts = [entry["present"], entry["missing"], *(entry.get("categories") or {}).values()]
            counts += entry.get("histogram") or []
            assert all(c is None or c == 0 or c >= profile["min_cell"] for c in counts), (site, name)
    # No raw value of the exports reached the server: only the dictionary's names and numbers.
    files = [p for p in result.rglob("*") if p.suffix in (".json", ".txt")]
    text = "\n".join(p.read_text(errors="replace") for p in files)
    raw = (layout.kit("hungary") / "data" / "indo_rct" / "train.csv").read_text()
    for token in ("1_yes", "0_no", "1_female", "2_male", "2_IU", "1_type 1", "0_no SOD"):
        assert token in raw and token not in text, token
