"""End to end in FLARE POC mode: a real server, four real site processes, mTLS, the FLARE API.

Slow (about a minute each); marked ``slow``. Each federation has its own workspace under
``tmp_path`` on its own port, so it does not collide with a running ``fedhealth demo``; the two tests
of a site that cannot take part share one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import xgboost as xgb

from fedhealth.constants import EHR_SCHEMA_FILE, HEART_DATASET_DIR, HEART_SITES, TASK_EHR_PROFILE, TRAIN_FILE
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.reports.run_record import NEVER_STARTED
from fedhealth.reports.run_report import build_report, find_run_files, to_markdown
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.registry import build_task
from fedhealth.trees.model import MODEL_FILE
from fedhealth.workflows.ehr_alignment_controller import PROFILES_FILE
from fedhealth_tools.cli import main
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.demo import run_demo, run_on
from fedhealth_tools.poc.processes import PocProcesses, free_port
from fedhealth_tools.poc.status import job_status
from fedhealth_tools.poc.tabular_data import write_tabular_data
from fedhealth_tools.poc.variants import heart_poc, job_variant, project_on_port
from fedhealth_tools.poc.workspace import PocError, PocLayout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
DICTIONARY = json.loads((ROOT / "job_specs" / "dictionaries" / "heart.json").read_text())
INDO_RCT, INDO_RCT_JOB = "indo_rct", "indo_rct_fedavg"
SMALL_CENTRES = [
    "switzerland",
    "va_long_beach",
]  # indo_rct centres 3_UK and 4_Case: 15 and 2 training patients
# The sites' default floor (fedhealth.policy.site_limits) declines the shipped batch 4.
BATCH_16 = {"batch_size": 16}


def _flare_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if "fedhealth_test_ws" in cmd:
            found.append(proc)
    return found


def test_poc_fedprox_beats_initial_model_at_every_site(tmp_path: Path) -> None:
    workspace = tmp_path / "fedhealth_test_ws"
    report = run_demo(
        job_dir=job_variant(
            ROOT / "jobs" / "heart_fedprox",
            tmp_path / "jobs" / "heart_fedprox",
            rounds=ROUNDS,
            executor_args=BATCH_16,
        ),
        project_file=project_on_port(ROOT / "provision" / "poc.yml", tmp_path / "project.yml", free_port()),
        workspace=workspace,
        results_dir=tmp_path / "results",
        timeout=300,
    )
    assert report["rounds"] == ROUNDS
    assert sorted(s["name"] for s in report["sites"]) == sorted(HEART_SITES)
    sizes = {s["name"]: (s["n_train"], s["n_test"]) for s in report["sites"]}
    assert sizes == {  # each hospital's export: all 920 patients, FLamby's split kept
        "cleveland": (199, 104),
        "hungary": (193, 101),
        "switzerland": (80, 43),
        "va_long_beach": (131, 69),
    }
    for site in report["sites"]:
        # Loss, not accuracy: a random start can score well on Switzerland's nearly all-positive test set.
        assert site["loss"] < site["initial"]["loss"], site["name"]
        assert 0.0 <= site["accuracy"] <= 1.0
    assert report["global"]["accuracy"] > 0.7
    saved = json.loads((tmp_path / "results" / "report.json").read_text())
    assert {"job", "rounds", "sites", "global"} <= set(saved)
    assert len(saved["sites"]) == 4 and saved["global"]["auc"] > 0.7
    assert (tmp_path / "results" / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The cross-site matrix holds the global model and each site's local model, on every site.
    assert all(len(models) == 5 for models in report["cross_site"].values())
    matrix = report["cross_site_matrix"]["auc"]
    assert len(matrix["sites"]) == 4 and len(matrix["models"]) == 5
    # Per-site validation with intervals, flags and the gate on the minimum site.
    assert saved["deploy_decision"] in ("DEPLOY", "DO NOT DEPLOY")
    for site in saved["sites"]:
        auc = site["metrics"]["auc"]
        assert site["deploy"] in ("DEPLOY", "DO NOT DEPLOY") and site["flagged"] is False  # 4 sites: no 2-SD
        if site["name"] != "switzerland":
            assert auc["lo"] <= auc["value"] <= auc["hi"], site["name"]
    # Switzerland's test split has 3 negative patients: a small cell, so the site withholds its AUC.
    switzerland = next(s for s in saved["sites"] if s["name"] == "switzerland")
    assert switzerland["metrics"]["auc"]["value"] is None and switzerland["deploy"] == "DO NOT DEPLOY"
    assert "not evaluable: the site withheld auc (fewer than 5 negative" in switzerland["deploy_reason"]
    assert saved["deploy_decision"] == "DO NOT DEPLOY"
    assert len(saved["curves"]["cleveland"]["train_loss"]) == ROUNDS
    # TensorBoard event files with per-site curves, streamed to the server.
    assert {p.name for p in (tmp_path / "results" / "tb_events").iterdir()} == set(HEART_SITES)
    assert _flare_processes() == []
    # fedhealth report on the downloaded job result (as after download_job in the admin console):
    # the same report as the demo's.
    downloaded = workspace / "downloads" / report["job_id"]
    assert main(["report", str(downloaded), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    for key in ("job", "rounds", "sites", "global", "gate", "deploy_decision", "cross_site_matrix"):
        assert again[key] == saved[key], key
    assert again["eval_split"] == "test"
    _assert_alignment(downloaded, sizes)


def _assert_alignment(result: Path, sizes: dict[str, tuple[int, int]]) -> None:
    """The server's alignment record: every dictionary feature placed, small cells suppressed."""
    schema = json.loads(next(result.rglob(EHR_SCHEMA_FILE)).read_text())
    profiles = json.loads(next(result.rglob(PROFILES_FILE)).read_text())
    names = [f["name"] for f in DICTIONARY["features"]]
    kept, dropped = [f["name"] for f in schema["features"]], [d["name"] for d in schema["dropped"]]
    assert len(names) == 13 and sorted(kept + dropped) == sorted(names)  # each feature kept or dropped once
    assert all(d["reason"] for d in schema["dropped"])
    assert sorted(schema["sites"]) == sorted(profiles) == sorted(HEART_SITES)
    min_cell = schema["policy"]["min_cell"]
    assert min_cell == 5
    for site, profile in profiles.items():
        assert profile["rows"] == sizes[site][0]  # the site profiles its training rows
    # Switzerland never measures cholesterol (its export says 0, its mapping: "not measured").
    chol = profiles["switzerland"]["features"]["chol"]
    assert chol["missing"] == profiles["switzerland"]["rows"] == 80 and chol["present"] == 0
    assert schema["sites"]["switzerland"]["features"]["chol"]["missing"] == 80
    cells = [
        (site, name, count)
        for site, profile in profiles.items()
        for name, feature in profile["features"].items()
        for count in [*(feature.get("categories") or {}).values(), *(feature.get("histogram") or [])]
    ]
    assert cells and any(c is None for _, _, c in cells)  # something was small enough to suppress
    small = [(site, name, c) for site, name, c in cells if c is not None and 0 < c < min_cell]
    assert small == [], f"cells below min_cell {min_cell} were sent: {small}"


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """One federation, heart and indo_rct data at every site, for the tests below it:
    ``(layout, workspace, admin, check)``."""
    workspace = tmp_path_factory.mktemp("fedhealth_test_ws")
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    write_tabular_data(layout, INDO_RCT)  # a second table beside the heart export, its own folder
    with PocProcesses(layout, workspace / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            yield layout, workspace, admin, procs.check_alive
    assert _flare_processes() == []


@pytest.fixture(scope="module")
def indo_rct(federation: tuple, tmp_path_factory: pytest.TempPathFactory) -> tuple[PocLayout, Path]:
    """The indo_rct job (config only: a spec, a dictionary and each site's mapping) run on the federation."""
    layout, workspace, admin, check = federation
    job = job_variant(
        ROOT / "jobs" / INDO_RCT_JOB, tmp_path_factory.mktemp("jobs") / INDO_RCT_JOB, rounds=ROUNDS
    )
    return layout, run_on(admin, layout, job, workspace=workspace, timeout=300, check=check)


def test_indo_rct_runs_from_a_spec_and_mappings_and_the_small_centres_decline(indo_rct: tuple) -> None:
    """Centres 3_UK and 4_Case (15 and 2 training patients) decline the alignment (a site releases
    nothing about fewer patients than its ``min_examples_per_round``, 16); the job goes on with the
    other two, as its ``min_clients`` allows."""
    layout, result = indo_rct
    record, cross = find_run_files(result)
    report = build_report(INDO_RCT_JOB, record, cross)
    assert report["rounds"] == ROUNDS
    trained = [sorted(entry["sites"]) for entry in record["rounds"]]
    assert trained == [sorted(s for s in layout.sites if s not in SMALL_CENTRES)] * ROUNDS
    declined = [f for f in record["failures"] if f["task"] == TASK_EHR_PROFILE]
    assert sorted(f["site"] for f in declined) == SMALL_CENTRES
    for failure in declined:
        assert "small cell, below this site's min_examples_per_round 16" in failure["reason"], failure
    for site in report["sites"]:
        if site["name"] not in SMALL_CENTRES:
            assert site["n_test"] > 0 and 0.0 <= site["auc"] <= 1.0, site


def test_indo_rct_server_received_only_suppressed_counts(indo_rct: tuple) -> None:
    layout, result = indo_rct
    schema = json.loads(next(result.rglob(EHR_SCHEMA_FILE)).read_text())
    profiles = json.loads(next(result.rglob(PROFILES_FILE)).read_text())
    dictionary = DataDictionary.from_dict(
        json.loads((ROOT / "job_specs" / "dictionaries" / "indo_rct.json").read_text())
    )
    assert sorted(profiles) == sorted(s for s in layout.sites if s not in SMALL_CENTRES)
    assert schema["dictionary"] == dictionary.fingerprint() and sorted(schema["sites"]) == sorted(profiles)
    placed = [f["name"] for f in schema["features"]] + [d["name"] for d in schema["dropped"]]
    assert sorted(placed) == sorted(dictionary.names)
    assert len(schema["columns"]) == len(schema["mean"]) == len(schema["std"]) > 0
    for site, profile in profiles.items():
        assert set(profile) == {"dictionary", "rows", "min_cell", "features", "problems"}, site
        for name, entry in profile["features"].items():
            cells = [*(entry.get("categories") or {}).values(), *(entry.get("histogram") or [])]
            assert all(c is None or c == 0 or c >= profile["min_cell"] for c in cells), (site, name)
    # No raw value of the exports reached the server: only the dictionary's names and numbers.
    files = [p for p in result.rglob("*") if p.suffix in (".json", ".txt")]
    text = "\n".join(p.read_text(errors="replace") for p in files)
    raw = (layout.kit("hungary") / "data" / INDO_RCT / "train.csv").read_text()
    for token in ("1_yes", "0_no", "1_female", "2_male", "2_IU", "1_type 1", "0_no SOD"):
        assert token in raw and token not in text, token


XGBOOST_JOB = "heart_xgboost"


@pytest.fixture(scope="module")
def xgboost_run(federation: tuple, tmp_path_factory: pytest.TempPathFactory) -> tuple[PocLayout, Path]:
    """The histogram XGBoost job on the shared federation, 10 boosting rounds (about 1 s each in POC)."""
    layout, workspace, admin, check = federation
    job = job_variant(ROOT / "jobs" / XGBOOST_JOB, tmp_path_factory.mktemp("jobs") / XGBOOST_JOB, rounds=10)
    return layout, run_on(admin, layout, job, workspace=workspace, timeout=300, check=check)


def _pooled_xgboost(layout: PocLayout, schema: dict, job: dict) -> tuple[xgb.Booster, dict]:
    """Centralized XGBoost with the job's parameters on the pooled training rows of every site's export."""
    client = json.loads((ROOT / "jobs" / XGBOOST_JOB / "app/config/config_fed_client.json").read_text())
    task = build_task("tabular", client["components"][0]["args"]["task_args"])
    sites = {}
    for name in layout.sites:
        site = task.load_site(SiteContext(name, layout.kit(name), {}, None))
        site.set_schema(schema, save=False)
        sites[name] = site
    x = np.concatenate([s.arrays("train")[0] for s in sites.values()])
    y = np.concatenate([s.arrays("train")[1] for s in sites.values()])
    booster = xgb.train(job["xgb_params"], xgb.DMatrix(x, label=y, missing=np.nan), job["num_rounds"])
    return booster, sites


def test_poc_xgboost_histogram_equals_pooled_training_and_reports_like_a_neural_job(
    xgboost_run: tuple, indo_rct: tuple
) -> None:
    layout, result = xgboost_run
    record, cross = find_run_files(result)
    report = build_report(XGBOOST_JOB, record, cross)
    model_file = next(result.rglob(MODEL_FILE))
    federated = xgb.Booster()
    federated.load_model(str(model_file))  # XGBoost's own JSON format, as exported
    server = json.loads(next(result.rglob("app_server/config/config_fed_server.json")).read_text())
    job = next(w["args"] for w in server["workflows"] if w["id"] == "xgboost")
    assert federated.num_boosted_rounds() == job["num_rounds"] == report["model"]["trees"] == 10
    assert report["model"]["sites"] == sorted(HEART_SITES) and report["model"]["family"] == "xgboost"
    assert "_missing" not in " ".join(federated.feature_names)  # no indicators: trees take NaN as it is
    log = next(result.rglob("log.txt")).read_text()  # the server job's log, in the downloaded result
    assert "XGBoost collectives for 4 sites on 127.0.0.1:" in log  # never XGBoost's tracker on 0.0.0.0
    # The same model as centralized training on the pooled rows, up to floating-point histogram sums.
    schema = json.loads(next(result.rglob(EHR_SCHEMA_FILE)).read_text())
    pooled, sites = _pooled_xgboost(layout, schema, job)
    for name, site in sites.items():
        x, _ = site.arrays("test")
        matrix = xgb.DMatrix(x, missing=np.nan, feature_names=federated.feature_names)
        gap = np.abs(federated.predict(matrix) - pooled.predict(matrix)).max()
        assert gap < 1e-4, (name, gap)
    # Per-site validation, intervals, the gate: the neural jobs' report, from the tree model's scores.
    assert sorted(s["name"] for s in report["sites"]) == sorted(HEART_SITES)
    for site in report["sites"]:  # switzerland withholds its AUC (3 negative test patients, a small cell)
        assert site["n_test"] > 0 and (site["auc"] is None) == (site["name"] == "switzerland"), site
        assert site["auc"] is None or 0.5 < site["auc"] <= 1.0, site
    assert report["global"]["model"] == "SRV_xgboost" and report["global"]["auc"] > 0.8
    assert report["gate"]["decision"] in ("DEPLOY", "DO NOT DEPLOY") and report["failures"] == []
    neural = build_report(INDO_RCT_JOB, *find_run_files(indo_rct[1]))
    assert set(report) == set(neural)

    def headings(rep: dict) -> list[str]:  # the sections, without the title (the job's name)
        return [
            line
            for line in to_markdown(rep).splitlines()[1:]
            if line.startswith("#") and "Failed" not in line
        ]

    assert headings(report) == headings(neural) and len(headings(report)) >= 1


def _job_one_site_cannot_build(tmp_path: Path, site: str) -> Path:
    """heart_fedprox where ``site`` gets an app whose executor has an argument it does not take.

    The copy needs all 4 sites (``meta.json``, the alignment and ScatterAndGather ``min_clients``), as the
    shipped heart jobs did before they went on without one site (``job_specs/README.md``, "Slow and
    missing sites"): a site whose job never starts then ends the job, which this test checks is named.
    """
    job = job_variant(
        ROOT / "jobs" / "heart_fedprox",
        tmp_path / "jobs" / "heart_bad_arg",
        rounds=2,
        min_sites=len(HEART_SITES),
        executor_args=BATCH_16,
    )
    server = job / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    next(w for w in config["workflows"] if w["id"] == "alignment")["args"]["min_clients"] = len(HEART_SITES)
    server.write_text(json.dumps(config, indent=2))
    shutil.copytree(job / "app", job / "app_bad")
    config_path = job / "app_bad" / "config" / "config_fed_client.json"
    config = json.loads(config_path.read_text())
    config["executors"][0]["executor"]["args"]["no_such_argument"] = 1
    config_path.write_text(json.dumps(config, indent=2))
    meta = json.loads((job / "meta.json").read_text())
    others = [s for s in HEART_SITES if s != site]
    meta["name"] = "heart_bad_arg"
    meta["deploy_map"] = {"app": ["server", *others], "app_bad": [site]}
    (job / "meta.json").write_text(json.dumps(meta, indent=2))
    return job


def test_poc_site_whose_executor_cannot_be_built_is_named_with_its_reason(
    tmp_path: Path, federation: tuple
) -> None:
    layout, workspace, admin, check = federation
    job = _job_one_site_cannot_build(tmp_path, "switzerland")
    job_id = admin.submit(job, workspace / "submit")
    status = admin.follow(job_id, on_progress=lambda _: None, check=check, timeout=240)
    text = job_status(layout, job_id, workspace / "downloads")  # fedhealth status JOB, its own session
    assert status.startswith("FINISHED:") and status != "FINISHED:COMPLETED"
    assert f"job {job_id} (heart_bad_arg): {status}" in text
    assert "the run was aborted" in text
    assert f"- switzerland (no task ran): {NEVER_STARTED.format(job_id=job_id)}" in text
    assert "no_such_argument" in text  # the site's own error log, readable in POC
    record = json.loads(next((workspace / "downloads" / job_id).rglob("fedhealth_run.json")).read_text())
    assert record["status"] == "aborted"
    assert [f["site"] for f in record["failures"]] == ["switzerland"]  # only the failed site is blamed
    assert main(["report", str(workspace / "downloads" / job_id), "--out", str(tmp_path / "report")]) == 0
    assert "- switzerland (no task ran): " in (tmp_path / "report" / "report.md").read_text()


def test_poc_site_without_a_required_column_fails_and_server_names_it(
    tmp_path: Path, federation: tuple
) -> None:
    layout, workspace, admin, check = federation  # runs after the test above: it changes the data
    assert next(f for f in DICTIONARY["features"] if f["name"] == "age")["required"] is True
    train = layout.kit("switzerland") / "data" / HEART_DATASET_DIR / TRAIN_FILE
    pd.read_csv(train, dtype=str, keep_default_na=False).drop(columns=["age"]).to_csv(train, index=False)
    job = job_variant(
        ROOT / "jobs" / "heart_fedprox", tmp_path / "jobs" / "heart_fedprox", rounds=2, executor_args=BATCH_16
    )
    with pytest.raises(PocError) as info:
        run_on(admin, layout, job, workspace=workspace, timeout=240, check=check)
    message = str(info.value)
    assert "feature alignment failed" in message  # the server's step before training
    assert "site switzerland" in message
    assert "heart_disease/train.csv: required feature(s) ['age'] have no column in this table" in message
    for other in ("cleveland", "hungary", "va_long_beach"):
        assert f"site {other}" not in message and f"{other}:" not in message  # only the failed site
