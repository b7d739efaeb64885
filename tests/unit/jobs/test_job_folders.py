"""Every folder under jobs/ is a FLARE job an admin can submit as it is, with no code and no paths."""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flower_modules import FLOWER_JOBS
from nvflare.app_common.widgets.component_path_authorizer import ComponentPathAuthorizer

from fedhealth import constants as C
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth_tools.provision.allow_list import load as provisioned_allow_list

JOBS_DIR = Path(__file__).resolve().parents[3] / "jobs"
JOBS = sorted(p.name for p in JOBS_DIR.iterdir() if p.is_dir())  # each one a submittable job
# The tabular jobs with a network (heart and indo_rct); image jobs: tests/unit/jobs/test_cxr_jobs.py, tree
# jobs: tests/unit/jobs/test_tree_jobs.py
TREE_JOBS = [job for job in JOBS if "xgboost" in job]
# Flower jobs (their components need flwr): tests/unit/jobs/test_flower_jobs.py
HEART_JOBS = [
    job for job in JOBS if job.startswith(("heart_", "indo_rct_")) and job not in TREE_JOBS + FLOWER_JOBS
]
SPECS_DIR = JOBS_DIR.parent / "job_specs"
CONFIG_FILES = ("config_fed_server.json", "config_fed_client.json")
ALLOW_LIST = provisioned_allow_list()  # what provisioning writes into every kit
# job -> FedProx mu of its executor (FedAvg is mu = 0)
EXPECTED_MU = {"heart_fedavg": 0.0, "heart_fedprox": "positive"}
# Components whose constructor we run with the job's args (a wrong arg name fails here, not at a site).
CHECKED_CLASSES = (
    "fedhealth.executors.site_executor.SiteExecutor",
    "fedhealth.shareables.scheduled_generator.ScheduledShareableGenerator",
    "fedhealth.workflows.ehr_alignment_controller.EhrAlignmentController",
    "fedhealth.persistors.tabular_model_persistor.TabularModelPersistor",
    "fedhealth.widgets.run_recorder.RunRecorder",
    "fedhealth.shareables.he_scheduled_generator.HEScheduledShareableGenerator",
    "fedhealth.widgets.he_context_check.HEContextCheck",
    "fedhealth.filters.he_shape_restorer.HEShapeRestorer",
    "fedhealth.filters.he_update_meter.HEUpdateMeter",
    "nvflare.app_opt.he.model_encryptor.HEModelEncryptor",
    "nvflare.app_opt.he.model_decryptor.HEModelDecryptor",
    "nvflare.app_opt.he.intime_accumulate_model_aggregator.HEInTimeAccumulateWeightedAggregator",
    "fedhealth.workflows.he_global_model_eval.HEGlobalModelEval",
    "fedhealth.shareables.fedopt_generator.FedOptShareableGenerator",
    "fedhealth.workflows.clustered_controller.ClusteredController",
    "fedhealth.workflows.fedbuff_controller.FedBuffController",
    "nvflare.app_common.aggregators.intime_accumulate_model_aggregator.InTimeAccumulateWeightedAggregator",
)
HE_PREFIX = "nvflare.app_opt.he."


def _apps(job: str) -> list[Path]:
    return sorted(p for p in (JOBS_DIR / job).iterdir() if p.is_dir())


def _configs(job: str) -> Iterator[tuple[Path, dict]]:
    for app in _apps(job):
        for name in CONFIG_FILES:
            path = app / "config" / name
            if path.is_file():
                yield path, json.loads(path.read_text())


def _component_specs(node: object) -> Iterator[dict]:
    """Every ``{"path": "pkg.mod.Class", ...}`` dict, nested model args included."""
    if isinstance(node, dict):
        path = node.get("path")
        if isinstance(path, str) and "." in path and "/" not in path:
            yield node
        for value in node.values():
            yield from _component_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _component_specs(item)


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _build(spec: dict) -> object:
    """Instantiate a component as FLARE would, building nested ``{"path", "args"}`` args first."""
    args = {
        k: _build(v) if isinstance(v, dict) and "path" in v else v for k, v in spec.get("args", {}).items()
    }
    return _import(spec["path"])(**args)


def _executor_spec(job: str) -> dict:
    client = dict(_configs(job))[JOBS_DIR / job / "app" / "config" / "config_fed_client.json"]
    (entry,) = [e for e in client["executors"] if e["executor"]["id"] == "executor"]  # the site executor
    return entry["executor"]


def _executor_args(job: str) -> dict:
    return _executor_spec(job)["args"]


def _server(job: str) -> dict:
    return dict(_configs(job))[JOBS_DIR / job / "app" / "config" / "config_fed_server.json"]


def test_the_expected_jobs_exist() -> None:
    assert set(EXPECTED_MU) <= set(JOBS)


@pytest.mark.parametrize("job", JOBS)
def test_meta_deploy_map_matches_apps(job: str) -> None:
    meta = json.loads((JOBS_DIR / job / "meta.json").read_text())
    assert meta["name"] == job
    assert set(meta["deploy_map"]) == {p.name for p in _apps(job)}
    assert all(isinstance(sites, list) and sites for sites in meta["deploy_map"].values())
    assert 1 <= meta.get("min_clients", 1) <= len(C.HEART_SITES)


@pytest.mark.parametrize("job", JOBS)
def test_each_app_has_parsable_configs(job: str) -> None:
    for app in _apps(job):
        present = [n for n in CONFIG_FILES if (app / "config" / n).is_file()]
        assert present, f"{app} has neither server nor client config"
        for name in present:
            config = json.loads((app / "config" / name).read_text())
            assert config.get("format_version") == 2


@pytest.mark.parametrize("job", HEART_JOBS)
def test_component_paths_import_and_are_allowed(job: str) -> None:
    specs = [spec for _, config in _configs(job) for spec in _component_specs(config)]
    assert len(specs) >= 5
    paths = {s["path"] for s in specs}
    assert "fedhealth.persistors.tabular_model_persistor.TabularModelPersistor" in paths
    for spec in specs:
        cls = _import(spec["path"])
        assert inspect.isclass(cls), spec["path"]
        allowed = [p for p in ALLOW_LIST if ComponentPathAuthorizer._path_matches_prefix(spec["path"], p)]
        assert allowed, f"{spec['path']} is not on the provisioned class allow-list"


@pytest.mark.parametrize("job", HEART_JOBS)
def test_component_args_are_accepted(job: str) -> None:
    built = 0
    for _, config in _configs(job):
        for spec in _component_specs(config):
            if spec["path"] in CHECKED_CLASSES:
                assert _build(spec) is not None
                built += 1
    assert built >= 4


@pytest.mark.parametrize("job", HEART_JOBS)
def test_executor_instantiates_with_job_args(job: str) -> None:
    executor = _build(_executor_spec(job))
    assert isinstance(executor, SiteExecutor) and executor.task.name == "tabular"
    args = _executor_args(job)
    assert executor.task.dataset == args["task_args"]["dataset"]
    assert [a["name"] for a in args["algorithms"]] == [a["name"] for a in executor.algorithm_specs]


@pytest.mark.parametrize("job", HEART_JOBS)
def test_sites_and_server_align_on_the_one_dictionary_file(job: str) -> None:
    """The executor's and the alignment's dictionary are the family's file: their fingerprints agree."""
    (alignment,) = [w for w in _server(job)["workflows"] if w["id"] == "alignment"]
    site = DataDictionary.from_dict(_executor_args(job)["task_args"]["dictionary"])
    server = DataDictionary.from_dict(alignment["args"]["dictionary"])
    assert site.fingerprint() == server.fingerprint()
    name = "indo_rct" if job.startswith("indo_rct_") else "heart"
    source = json.loads((SPECS_DIR / "dictionaries" / f"{name}.json").read_text())
    assert site.fingerprint() == DataDictionary.from_dict(source).fingerprint()
    (persistor,) = [c for c in _server(job)["components"] if c["id"] == "persistor"]
    assert "model" not in persistor["args"] and set(persistor["args"]["model_args"]) <= {
        "arch",
        "hidden",
        "seed",
    }


@pytest.mark.parametrize("job", HEART_JOBS)
def test_task_names_are_the_kit_constants(job: str) -> None:
    client = json.loads((JOBS_DIR / job / "app" / "config" / "config_fed_client.json").read_text())
    entry, *protocol = client["executors"]
    # An HE or SecAgg+ job evaluates only the global model: no site sends its local model in clear.
    he = any(s["path"].startswith(HE_PREFIX) for s in _component_specs(client))
    secagg = any(e["executor"]["path"].endswith("SecAggExecutor") for e in protocol)
    assert [e["tasks"] for e in protocol] == ([list(C.SECAGG_TASKS)] if secagg else [])
    submit = "" if he or secagg else C.TASK_SUBMIT_MODEL
    assert set(entry["tasks"]) == {
        C.TASK_EHR_PROFILE,
        C.TASK_SET_SCHEMA,
        C.TASK_TRAIN,
        C.TASK_VALIDATE,
        submit,
    } - {""}
    workflows = {w["id"]: w["args"] for w in _server(job)["workflows"]}
    sag = next(a for a in workflows.values() if "train_task_name" in a)
    assert sag["train_task_name"] == C.TASK_TRAIN
    cse = next(a for a in workflows.values() if "validation_task_name" in a)
    assert (cse["validation_task_name"], cse.get("submit_model_task_name", "")) == (C.TASK_VALIDATE, submit)


@pytest.mark.parametrize("job", JOBS)
def test_no_absolute_paths(job: str) -> None:
    for path, config in _configs(job):
        for value in _strings(config):
            assert not value.startswith("/") and ":\\" not in value, f"{path.name}: {value!r}"
    meta = json.loads((JOBS_DIR / job / "meta.json").read_text())
    assert not [v for v in _strings(meta) if v.startswith("/") or ":\\" in v]


@pytest.mark.parametrize("job", JOBS)
def test_no_python_in_the_job(job: str) -> None:
    assert sorted((JOBS_DIR / job).rglob("*.py")) == []
    assert not any(p.name == "custom" for p in (JOBS_DIR / job).rglob("*") if p.is_dir())


@pytest.mark.parametrize("job", JOBS)
def test_job_has_readme(job: str) -> None:
    readme = JOBS_DIR / job / "README.md"
    assert readme.is_file(), f"jobs/{job}/README.md is missing"
    assert readme.read_text().strip()


@pytest.mark.parametrize(("job", "mu"), EXPECTED_MU.items())
def test_fedavg_and_fedprox_differ_in_mu(job: str, mu: float | str) -> None:
    fedprox = [a for a in _executor_args(job)["algorithms"] if a["name"] == "fedprox"]
    actual = fedprox[0]["args"]["mu"] if fedprox else 0.0
    if mu == "positive":
        assert actual > 0
    else:
        assert actual == mu
