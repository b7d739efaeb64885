"""cxr_dp, cxr_scaffold, cxr_ditto, cxr_topk and cxr_densenet end to end on one POC federation of DICOM sites.

One real server and four real site processes (mTLS), started once; the four jobs run one after the
other, each for two rounds, on the fewest converted PneumoniaMNIST images that leave every site the
jobs' ``min_images`` (placed by the demo's own data step). Each job must finish, every site must
report every round, and each algorithm must leave its mark: DP-SGD's privacy ledger, SCAFFOLD's
control variates, Ditto's personal metrics, top-k's fewer bytes. ``cxr_densenet`` runs as a
multi-label variant on 32 px images (its own image folder per site with three findings, two of them
synthetic), through the GPU request in its ``resource_spec`` that the CPU-only POC sites accept.
Then ``fedhealth demo --job
cxr_fedavg`` (a two-round copy) places the same small data and runs the job on its own federation.
Slow; marked ``slow``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from fedhealth import constants as C
from fedhealth.client.scaffold import CONTROL_NORM
from fedhealth.imaging.labels import LABELS_FILE
from fedhealth.imaging.site import CXR_DATASET_DIR
from fedhealth.reports.run_report import build_report, find_run_files, to_markdown
from fedhealth_tools.cli import main
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.demo import run_on
from fedhealth_tools.poc.processes import PocProcesses, free_port
from fedhealth_tools.poc.task_data import place_task_data
from fedhealth_tools.poc.variants import job_variant, project_on_port
from fedhealth_tools.poc.workspace import LOCAL_DATA, PocError, PocLayout, prepare_workspace

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 2
# Images per split over the four sites: with the demo's split (alpha 1, seed 0) 160 is the fewest
# (of 80, 100, 120, 160) that leaves every site 16 training images, the sites' default
# min_examples_per_round, and the jobs' min_images of 10 in val and test (21 to 65 a site).
IMAGES = 160
JOBS = ("cxr_dp", "cxr_scaffold", "cxr_ditto", "cxr_topk", "cxr_densenet")
# cxr_densenet's multi-label variant: "pneumonia" is the real label, the other two are SYNTHETIC
# (random with a fixed seed, ~30% positive): they test the per-label path, not a finding.
FINDINGS = ("pneumonia", "effusion", "nodule")
ML_FOLDER = "cxr_multilabel"
FINDING_THRESHOLDS = {"pneumonia": 0.6, "effusion": 0.55}  # "nodule" keeps the job's threshold
DENSENET_ROUNDS = 1  # DenseNet-121 on 2 shared CPU cores: one round proves the path
DENSENET121_PARAMETERS = 6_950_659  # MONAI's DenseNet-121, 1 channel in, 3 logits out
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
    _multilabel_copies(layout)
    out: dict = {}
    seconds: dict[str, float] = {}
    crosses.clear()
    results.clear()
    with PocProcesses(layout, workspace / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            for job in JOBS:
                variant = (
                    _densenet_variant(workspace / "jobs" / job)
                    if job == "cxr_densenet"
                    else job_variant(ROOT / "jobs" / job, workspace / "jobs" / job, rounds=ROUNDS)
                )
                started = time.perf_counter()
                try:
                    result = run_on(
                        admin,
                        layout,
                        variant,
                        workspace=workspace,
                        timeout=600 if job == "cxr_densenet" else 300,
                        check=procs.check_alive,
                    )
                except PocError as e:
                    out[job] = e
                    continue
                seconds[job] = time.perf_counter() - started
                record, cross = find_run_files(result)
                out[job] = (record, build_report(job, record, cross))
                crosses[job], results[job] = cross, Path(result)
    print(f"job seconds: {', '.join(f'{j} {s:.0f}' for j, s in seconds.items())}")
    yield layout, out
    assert _flare_processes() == []


crosses: dict[str, dict] = {}  # each job's cross-site results
results: dict[str, Path] = {}  # each job's downloaded result folder


def _multilabel_copies(layout: PocLayout) -> None:
    """Each site's converted images again under ML_FOLDER, labelled with FINDINGS (two synthetic)."""
    rng = np.random.default_rng(19)
    for site in layout.sites:
        data = layout.kit(site) / LOCAL_DATA
        shutil.rmtree(data / ML_FOLDER, ignore_errors=True)
        shutil.copytree(data / CXR_DATASET_DIR, data / ML_FOLDER)
        for labels in sorted((data / ML_FOLDER).rglob(LABELS_FILE)):
            table = pd.read_csv(labels, dtype={"label": int})
            extra = (rng.random((len(table), 2)) < 0.3).astype(int)
            out = pd.DataFrame({"file": table["file"], FINDINGS[0]: table["label"]})
            out[FINDINGS[1]], out[FINDINGS[2]] = extra[:, 0], extra[:, 1]
            out.to_csv(labels, index=False)


def _densenet_variant(dest: Path) -> Path:
    """cxr_densenet for the test: multi-label over FINDINGS, 32 px, ROUNDS rounds (config only)."""
    client = json.loads(
        (ROOT / "jobs" / "cxr_densenet" / "app" / "config" / "config_fed_client.json").read_text()
    )
    task_args = dict(client["executors"][0]["executor"]["args"]["task_args"])
    task_args.update(
        label_task="multilabel", classes=list(FINDINGS), positive_class="", image_size=32, folder=ML_FOLDER
    )
    variant = job_variant(
        ROOT / "jobs" / "cxr_densenet", dest, rounds=DENSENET_ROUNDS, executor_args={"task_args": task_args}
    )
    server = variant / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    (persistor,) = [c for c in config["components"] if c["id"] == "persistor"]
    persistor["args"]["model"]["args"]["num_classes"] = len(FINDINGS)
    (recorder,) = [c for c in config["components"] if c["id"] == "run_recorder"]
    recorder["args"]["finding_thresholds"] = FINDING_THRESHOLDS
    # cross-site evaluation of the global model only (no site's local DenseNet sent and scored 4 times)
    (cse,) = [w for w in config["workflows"] if w["id"] == "cross_site_eval"]
    cse["args"]["submit_model_task_name"] = ""
    server.write_text(json.dumps(config, indent=2))
    return variant


def _run(runs: tuple[PocLayout, dict], job: str) -> tuple[PocLayout, dict, dict]:
    layout, out = runs
    if isinstance(out[job], Exception):
        raise out[job]
    record, report = out[job]
    return layout, record, report


@pytest.mark.parametrize("job", JOBS)
def test_job_finishes_and_every_site_reports_every_round(runs, job: str) -> None:
    layout, record, report = _run(runs, job)
    rounds = DENSENET_ROUNDS if job == "cxr_densenet" else ROUNDS
    assert report["rounds"] == rounds and report["failures"] == [] and report["rejected_updates"] == []
    assert [sorted(entry["sites"]) for entry in record["rounds"]] == [sorted(layout.sites)] * rounds
    for site in report["sites"]:  # the final global model scored on each site's test images
        # a site with fewer than 5 test patients of a class withholds its AUC (a small cell)
        assert site["n_test"] > 0 and (site["auc"] is None or 0.0 <= site["auc"] <= 1.0), site["name"]
    assert sum(site["auc"] is not None for site in report["sites"]) >= 2


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
    assert comm["modes"] == ["topk 0.1 to 0.01 +EF (0.1 decaying over 20 rounds)"]
    assert set(comm["sites"]) == set(layout.sites)
    for entry in record["rounds"]:  # error feedback: what was not sent waits for the next round
        for site, metrics in entry["sites"].items():
            assert metrics["ef_residual_norm"] > 0, (entry["round"], site)
            # the schedule's share of the round: 10% in round 0, decaying towards 1% over 20 rounds
            share = 0.1 * 0.1 ** (entry["round"] / 20)
            assert metrics[C.M_TOPK_K_FRACTION] == pytest.approx(share), (entry["round"], site)
    for site, row in comm["sites"].items():
        assert row["rounds"] == ROUNDS, site
        assert row[C.M_BYTES_SENT] < row[C.M_BYTES_RAW] / 2, site  # at most 10% of 105k weights, float16


def test_densenet_asks_a_gpu_and_the_cpu_only_sites_run_it(runs) -> None:
    layout, record, report = _run(runs, "cxr_densenet")
    meta = json.loads((ROOT / "jobs" / "cxr_densenet" / "meta.json").read_text())
    assert meta["resource_spec"] == {"@default": {"num_of_gpus": 1}}  # what the shipped job asks
    assert not torch.cuda.is_available()  # these POC sites have no GPU: they fell back to the CPU
    for site in layout.sites:
        resources = json.loads((layout.kit(site) / "local" / "resources.json.default").read_text())
        (manager,) = [c for c in resources["components"] if c["id"] == "resource_manager"]
        assert manager["path"] == "fedhealth.resources.gpu_fallback.GpuOrCpuResourceManager", site
        assert manager["args"]["num_of_gpus"] == 0, site
    assert report["rounds"] == DENSENET_ROUNDS and report["failures"] == []


def test_densenet_multilabel_sites_report_an_auc_per_finding(runs) -> None:
    layout, _, _ = _run(runs, "cxr_densenet")
    cross = crosses["cxr_densenet"]
    assert sorted(cross) == sorted(layout.sites)
    for site, models in cross.items():
        (global_model,) = [m for m in models if m.startswith("SRV_")]
        per_label = models[global_model][C.M_PER_LABEL_AUC]
        assert list(per_label) == list(FINDINGS), site
        for finding, auc in per_label.items():  # None: fewer than 5 positives or negatives (withheld)
            assert auc is None or 0.0 <= auc <= 1.0, (site, finding)
    released = [
        a
        for models in cross.values()
        for m, r in models.items()
        if m.startswith("SRV_")
        for a in r[C.M_PER_LABEL_AUC].values()
    ]
    assert sum(a is not None for a in released) >= len(released) // 2


def test_densenet_multilabel_report_has_the_finding_by_site_gate(runs) -> None:
    """The report's per-finding gate: every finding at every site, each against its own threshold."""
    layout, _, report = _run(runs, "cxr_densenet")
    section = report["per_finding"]
    threshold = report["gate"]["threshold"]
    assert list(section["findings"]) == list(FINDINGS)
    assert section["thresholds"] == {**{f: threshold for f in FINDINGS}, **FINDING_THRESHOLDS}
    for finding, gate in section["findings"].items():
        assert sorted(gate["sites"]) == sorted(layout.sites), finding
    # two findings are coin flips and one round of 32 px training: no finding clears every site
    assert section["decision"] == report["deploy_decision"] == "DO NOT DEPLOY"
    assert {c["finding"] for c in section["failing"]} >= {"effusion", "nodule"}
    markdown = to_markdown(report)
    assert "## Per-finding gate" in markdown
    for finding in FINDINGS:
        assert f"| {finding} |" in markdown, finding


def test_densenet_global_model_is_densenet121(runs) -> None:
    _run(runs, "cxr_densenet")
    (path,) = sorted(results["cxr_densenet"].rglob("FL_global_model.pt"))
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    trainable = [k for k in state if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert sum(int(np.prod(np.shape(state[k]))) for k in trainable) == DENSENET121_PARAMETERS
    assert tuple(np.shape(state["net.class_layers.out.weight"])) == (len(FINDINGS), 1024)


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
