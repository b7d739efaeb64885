"""Tree models on tabular sites: native missing values, the model as a message, scoring like a network."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import xgboost as xgb
from ehr_cases import DICTIONARY, site_rows, write_site_folder
from tree_cases import DATASET, PARAMS
from tree_cases import pooled_booster as _booster
from tree_cases import tree_federation as _federation

from fedhealth import constants as C
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.registry import build_task
from fedhealth.trees.matrices import site_matrices
from fedhealth.trees.model import (
    MODEL_FILE,
    TREE_KEY,
    TreeModel,
    fingerprint,
    model_json,
    tree_from_weights,
    tree_weights,
)


def test_imputation_none_keeps_missing_values_as_nan_and_adds_no_indicator(tmp_path: Path) -> None:
    _, sites, schema = _federation(tmp_path)
    assert schema["columns"] == ["age", "sex", "cp=atypical_angina", "cp=asymptomatic", "chol"]
    chol = schema["columns"].index("chol")
    x3 = sites["site-3"].arrays("train")[0]
    assert np.isnan(x3[:, chol]).all() and not np.isnan(np.delete(x3, chol, axis=1)).any()
    assert not np.isnan(sites["site-1"].arrays("train")[0]).any()
    (train, _), (test, _), names = site_matrices(sites["site-3"])
    assert names == schema["columns"] and train.shape == (40, 5) and test.shape == (20, 5)


def test_a_tree_model_travels_as_json_bytes_and_scores_like_a_network(tmp_path: Path) -> None:
    task, sites, _ = _federation(tmp_path)
    booster = _booster(list(sites.values()))
    raw = bytes(booster.save_raw("json"))
    weights = tree_weights(raw)
    assert list(weights) == [TREE_KEY] and weights[TREE_KEY].dtype == np.uint8
    assert model_json(weights) == raw and fingerprint(raw) == fingerprint(model_json(weights))
    site = sites["site-3"]
    model = task.model_from_weights(weights, site)
    assert isinstance(model, TreeModel) and (model.in_features, model.n_trees) == (5, 5)
    x, y = site.arrays("test")
    expected = booster.predict(xgb.DMatrix(x, missing=np.nan), output_margin=True)
    np.testing.assert_allclose(model(torch.as_tensor(x)).numpy(), expected, rtol=1e-6)
    metrics = site.validate(model, n_bootstrap=50)
    assert metrics[C.M_N_TEST] == 20.0 and 0.0 <= metrics[C.M_AUC] <= 1.0
    auc = metrics[C.M_INTERVALS]["auc"]
    assert auc["lo"] <= auc["value"] <= auc["hi"]


def test_a_tree_model_of_another_width_is_refused_naming_the_site(tmp_path: Path) -> None:
    task, sites, _ = _federation(tmp_path)
    x = np.random.default_rng(0).normal(size=(30, 4))
    narrow = xgb.train(PARAMS, xgb.DMatrix(x, label=(x[:, 0] > 0).astype(float)), 2)
    with pytest.raises(ValueError) as err:
        task.model_from_weights(tree_weights(bytes(narrow.save_raw("json"))), sites["site-2"])
    assert str(err.value) == (
        "site site-2: the model takes 4 features but the aligned schema has 5; "
        "the job's model and its alignment disagree"
    )


def test_bytes_that_are_not_a_model_are_refused() -> None:
    with pytest.raises(ValueError, match="not a readable XGBoost JSON model"):
        tree_from_weights(tree_weights(b'{"not": "a model"}'))
    with pytest.raises(ValueError, match="1-D uint8 array"):
        model_json({"xgboost_json": np.zeros((2, 2), dtype=np.float32)})


def test_the_site_sends_the_booster_its_training_wrote_and_says_when_there_is_none(tmp_path: Path) -> None:
    _, sites, _ = _federation(tmp_path)
    site = sites["site-1"]
    with pytest.raises(RuntimeError) as err:
        site.extra_tasks()[C.TASK_SUBMIT_TREE]({})
    assert str(err.value).startswith(
        f"site site-1 holds no trained tree model ({MODEL_FILE} in its run folder)"
    )
    raw = bytes(_booster([site]).save_raw("json"))
    (tmp_path / "run" / "site-1" / MODEL_FILE).write_bytes(raw)
    assert model_json(site.extra_tasks()[C.TASK_SUBMIT_TREE]({})) == raw


def test_a_site_without_a_schema_cannot_give_tree_matrices(tmp_path: Path) -> None:
    task = build_task("tabular", {"dictionary": copy.deepcopy(DICTIONARY), "dataset": DATASET})
    root = tmp_path / "late"
    write_site_folder(root / "data" / DATASET, site_rows(20, 9), site_rows(10, 10))
    site = task.load_site(SiteContext("late", root, {}, None))
    with pytest.raises(ValueError) as err:
        site_matrices(site)
    assert str(err.value) == (
        "site late: tree jobs train on an aligned tabular task, and this site has no schema "
        "(did it take part in the alignment workflow?)"
    )


def test_a_site_with_one_class_trains_with_the_others_and_its_auc_is_not_made_up(tmp_path: Path) -> None:
    """Histogram boosting pools gradients, so a one-class site still contributes; its own AUC is undefined."""
    task, sites, _ = _federation(tmp_path)
    site = sites["site-1"]
    x, _ = site.arrays("test")
    site.test_table = site.test_table.__class__(
        site.test_table.features, np.ones(len(x), dtype=site.test_table.labels.dtype), site.test_table.report
    )
    model = tree_from_weights(tree_weights(bytes(_booster(list(sites.values())).save_raw("json"))))
    metrics = site.validate(model, n_bootstrap=20)
    assert metrics[C.M_N_TEST] == 20.0 and np.isnan(
        metrics[C.M_AUC]
    )  # the report shows n/a, the gate refuses
    assert metrics[C.M_ACCURACY] is not None
