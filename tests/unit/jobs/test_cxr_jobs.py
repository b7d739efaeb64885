"""The chest X-ray jobs: config only, allowed components, a model the sites can load, no fed_stats."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from nvflare.app_common.widgets.component_path_authorizer import ComponentPathAuthorizer

from fedhealth import constants as C
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth.models.image_model import ImageModel, load_image_weights
from fedhealth.models.state import to_numpy
from fedhealth.privacy.dp_config import MIN_BATCH_SIZE
from fedhealth_tools.provision.allow_list import load as provisioned_allow_list

JOBS_DIR = Path(__file__).resolve().parents[3] / "jobs"
# job -> FedProx mu (0 is FedAvg)
CXR_JOBS = {
    "cxr_fedavg": 0.0,
    "cxr_fedprox": "positive",
    "cxr_he": 0.0,
    "cxr_dp": 0.0,
    "cxr_scaffold": 0.0,
    "cxr_ditto": 0.0,
    "cxr_topk": 0.0,
    "cxr_secagg": 0.0,
    "cxr_fednova": 0.0,
}
# job -> the client algorithms it names (the spec's patch; the generated job must say the same)
ALGORITHMS = {
    "cxr_dp": ["dp_sgd"],
    "cxr_scaffold": ["scaffold"],
    "cxr_ditto": ["ditto"],
    "cxr_topk": ["topk"],
    "cxr_fednova": ["step_cap"],
}
# HE jobs evaluate the global model only: no site model is submitted to the server in clear.
NO_SUBMIT = {"cxr_he", "cxr_secagg"}  # only the global model is evaluated: no local model in clear
ALLOW_LIST = provisioned_allow_list()  # what provisioning writes into every kit


def _config(job: str, name: str) -> dict:
    return json.loads((JOBS_DIR / job / "app" / "config" / name).read_text())


def _build(spec: dict) -> object:
    module, _, name = spec["path"].rpartition(".")
    args = {
        k: _build(v) if isinstance(v, dict) and "path" in v else v for k, v in spec.get("args", {}).items()
    }
    return getattr(importlib.import_module(module), name)(**args)


def _specs(node: object):
    if isinstance(node, dict):
        if isinstance(node.get("path"), str) and "." in node["path"]:
            yield node
        for value in node.values():
            yield from _specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _specs(item)


@pytest.mark.parametrize(("job", "mu"), CXR_JOBS.items())
def test_executor_and_model_agree_and_build(job: str, mu: object) -> None:
    entry = _config(job, "config_fed_client.json")["executors"][0]  # the site executor (then SecAgg+'s)
    expected = {C.TASK_TRAIN, C.TASK_VALIDATE} | (set() if job in NO_SUBMIT else {C.TASK_SUBMIT_MODEL})
    assert set(entry["tasks"]) == expected
    args = entry["executor"]["args"]
    executor = SiteExecutor(**args)
    fedprox = [a["args"]["mu"] for a in args["algorithms"] if a["name"] == "fedprox"]
    assert (fedprox[0] > 0) if mu == "positive" else fedprox == []
    server = _config(job, "config_fed_server.json")
    (persistor,) = [c for c in server["components"] if c["id"] == "persistor"]
    model = _build(persistor["args"]["model"])
    assert (
        isinstance(model, ImageModel)
        and model.arch == args["task_args"]["model"]
        and model.in_channels == args["task_args"]["channels"]
    )
    task = executor.task
    site_model = ImageModel(task.model, task.channels, task.spec.n_outputs)
    load_image_weights(site_model, to_numpy(model))  # the sites can load the server's model
    assert "fed_stats" not in {w["id"] for w in server["workflows"]}
    for spec in _specs(server):
        if spec["path"].startswith("fedhealth."):
            assert _build(spec) is not None
    for spec in [*_specs(server), *_specs(_config(job, "config_fed_client.json"))]:
        assert any(ComponentPathAuthorizer._path_matches_prefix(spec["path"], p) for p in ALLOW_LIST), spec[
            "path"
        ]


@pytest.mark.parametrize(("job", "names"), ALGORITHMS.items())
def test_each_algorithm_job_names_its_algorithm_and_server_side(job: str, names: list[str]) -> None:
    client = _config(job, "config_fed_client.json")
    args = client["executors"][0]["executor"]["args"]
    assert [a["name"] for a in args["algorithms"]] == names and args["task"] == "dicom"
    server = _config(job, "config_fed_server.json")
    components = {c["id"]: c for c in server["components"]}
    (workflow,) = [w for w in server["workflows"] if w["id"] == "scatter_and_gather"]
    if job == "cxr_scaffold":
        assert workflow["path"].endswith("ScatterAndGatherScaffold")
        assert (
            components["aggregator"]["path"] == "fedhealth.aggregators.scaffold_aggregator.ScaffoldAggregator"
        )
        assert (
            args["optimizer"] == "sgd" and args["algorithms"][0]["args"]["lr_scale"] == 10.0
        )  # momentum 0.9
    elif job == "cxr_topk":
        assert components["aggregator"]["args"]["expected_data_kind"] == "WEIGHT_DIFF"
        assert [f["path"].rsplit(".", 1)[1] for c in client["task_result_filters"] for f in c["filters"]] == [
            "UpdateCompressor"
        ]
    elif job == "cxr_dp":
        assert args["batch_size"] >= MIN_BATCH_SIZE and workflow["args"]["num_rounds"] == 40
        assert (args["batch_size"], args["local_steps"]) == (256, 2)  # the CXR curve's DP_SETTINGS
        assert workflow["args"]["ignore_result_error"] is None  # a site at its budget is left out
    elif job == "cxr_fednova":  # heterogeneous sites: capped local work, FedNova's step normalization
        assert components["aggregator"]["args"]["rule"] == "fednova"
        assert args["algorithms"][0]["args"] == {"max_local_steps": 32}
        assert (args["optimizer"], args["batch_size"], args["local_steps"]) == ("sgd", 32, 0)
        assert workflow["path"].endswith(".ScatterAndGather") and workflow["args"]["min_clients"] == 3
    else:
        assert workflow["path"].endswith(".ScatterAndGather")


@pytest.mark.parametrize("job", CXR_JOBS)
def test_readme_names_the_model_choice_and_privacy(job: str) -> None:
    text = (JOBS_DIR / job / "README.md").read_text()
    assert "densenet121" in text and "small_cnn" in text and "de-identif" in text
