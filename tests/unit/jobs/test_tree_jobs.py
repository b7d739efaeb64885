"""The XGBoost jobs: config only, every component allowed and buildable, one dictionary, native missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nvflare.app_common.widgets.component_path_authorizer import ComponentPathAuthorizer

from fedhealth import constants as C
from fedhealth.aggregators.tree_bagging_aggregator import TreeBaggingAggregator
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth.executors.tabular_xgb_loader import TabularXGBDataLoader
from fedhealth.persistors.tree_model_persistor import TreeModelPersistor
from fedhealth.trees.model import MODEL_FILE
from fedhealth.workflows.loopback_xgb_controller import LoopbackXGBController
from fedhealth.workflows.tree_model_collector import TreeModelCollector
from fedhealth_tools.provision.allow_list import load as provisioned_allow_list

ROOT = Path(__file__).resolve().parents[3]
TREE_JOBS = sorted(p.name for p in (ROOT / "jobs").iterdir() if "xgboost" in p.name)
HISTOGRAM_JOBS = [job for job in TREE_JOBS if "bagging" not in job]


def _dictionary_file(job: str) -> dict:
    name = "indo_rct" if job.startswith("indo_rct_") else "heart"
    return json.loads((ROOT / "job_specs" / "dictionaries" / f"{name}.json").read_text())


def _config(job: str, side: str) -> dict:
    return json.loads((ROOT / "jobs" / job / "app" / "config" / f"config_fed_{side}.json").read_text())


def _build(spec: dict) -> object:
    module, _, name = spec["path"].rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    return cls(**spec.get("args", {}))


def test_there_is_a_histogram_job() -> None:
    assert TREE_JOBS == ["heart_xgboost", "heart_xgboost_bagging", "indo_rct_xgboost"]


@pytest.mark.parametrize("job", TREE_JOBS)
def test_every_component_is_allowed_and_builds_with_the_job_args(job: str) -> None:
    allow = provisioned_allow_list()
    client, server = _config(job, "client"), _config(job, "server")
    specs = (
        [e["executor"] for e in client["executors"]]
        + client["components"]
        + server["components"]
        + server["workflows"]
    )
    built = {spec["id"]: _build(spec) for spec in specs}
    for spec in specs:
        assert any(ComponentPathAuthorizer._path_matches_prefix(spec["path"], p) for p in allow), spec["path"]
    assert isinstance(built["executor"], SiteExecutor) and built["executor"].task.name == "tabular"
    if job in HISTOGRAM_JOBS:
        assert isinstance(built["data_loader"], TabularXGBDataLoader)
        assert isinstance(built["collect_model"], TreeModelCollector)
        assert isinstance(built["xgboost"], LoopbackXGBController)
    else:  # bagging: the kit's own parts around FLARE's ScatterAndGather
        assert [a["name"] for a in built["executor"].algorithm_specs] == ["tree_bagging"]
        assert isinstance(built["persistor"], TreeModelPersistor)
        assert isinstance(built["aggregator"], TreeBaggingAggregator)


@pytest.mark.parametrize("job", TREE_JOBS)
def test_sites_loader_and_server_use_one_dictionary_and_keep_missing_values(job: str) -> None:
    client, server = _config(job, "client"), _config(job, "server")
    workflows = {w["id"]: w["args"] for w in server["workflows"]}
    executor = next(e["executor"] for e in client["executors"] if e["executor"]["id"] == "executor")
    loaders = [c["args"]["task_args"] for c in client["components"] if c["id"] == "data_loader"]
    dictionaries = [executor["args"]["task_args"], *loaders]
    prints = {
        DataDictionary.from_dict(d).fingerprint()
        for d in (
            [a["dictionary"] for a in dictionaries]
            + [workflows["alignment"]["dictionary"], _dictionary_file(job)]
        )
    }
    assert len(prints) == 1
    assert {a["dataset"] for a in dictionaries} == {executor["args"]["task_args"]["dataset"]}
    # Trees split on missing values themselves: no imputation, no indicator columns.
    assert workflows["alignment"]["imputation"] == "none" and workflows["alignment"]["indicators"] is False
    if job not in HISTOGRAM_JOBS:
        (bagging,) = executor["args"]["algorithms"]
        assert bagging["name"] == "tree_bagging" and bagging["args"]["params"]["base_score"] == 0.5
        persistor = next(c for c in server["components"] if c["id"] == "persistor")
        assert persistor["args"]["base_score"] == bagging["args"]["params"]["base_score"]
        return
    xgb = workflows["xgboost"]
    assert xgb["data_split_mode"] == 0 and xgb["secure_training"] is False
    assert xgb["xgb_params"]["objective"] == "binary:logistic" and xgb["xgb_params"]["nthread"] == 1


@pytest.mark.parametrize("job", HISTOGRAM_JOBS)
def test_task_names_route_to_the_two_executors(job: str) -> None:
    client, server = _config(job, "client"), _config(job, "server")
    routes = {e["executor"]["id"]: set(e["tasks"]) for e in client["executors"]}
    assert routes["executor"] == {C.TASK_EHR_PROFILE, C.TASK_SET_SCHEMA, C.TASK_SUBMIT_TREE, C.TASK_VALIDATE}
    assert routes["xgb_executor"] == {"config", "start"}  # FLARE's histogram protocol
    xgb_executor = next(e["executor"] for e in client["executors"] if e["executor"]["id"] == "xgb_executor")
    # FLARE's executor writes the booster where the site's submit_tree_model step reads it
    assert xgb_executor["args"]["model_file_name"] == MODEL_FILE
    cse = next(w["args"] for w in server["workflows"] if w["id"] == "cross_site_eval")
    # Histogram boosting leaves the same model at every site: only the collected global model is scored.
    assert cse["submit_model_task_name"] == "" and cse["validation_task_name"] == C.TASK_VALIDATE
    assert [w["id"] for w in server["workflows"]] == [
        "alignment",
        "xgboost",
        "collect_model",
        "cross_site_eval",
    ]
