"""The bagging tree job's parts on real sites: the site's plug-in, the server's persistor and aggregator.

Three rounds of the job by hand, without FLARE's transport: the persistor's empty ensemble, each site's
``tree_bagging`` round through the generic :class:`~fedhealth.client.runner.SiteRunner`, the aggregator's
append; the ensemble grows by one tree per site per round and every site scores it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flare_doubles import site_context
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnableKey, make_model_learnable
from nvflare.app_common.app_constant import AppConstants
from tree_cases import tree_federation

from fedhealth import constants as C
from fedhealth.aggregators.tree_bagging_aggregator import TreeBaggingAggregator
from fedhealth.client.base import RoundInput, build_algorithms
from fedhealth.client.runner import SiteRunner
from fedhealth.models.state import to_numpy
from fedhealth.persistors.tree_model_persistor import TreeModelPersistor
from fedhealth.trees.model import MODEL_FILE, TreeModel, model_json, tree_weights
from fedhealth.trees.params import check_params

LOCAL = {"batch_size": 16, "local_steps": 0, "local_epochs": 1, "optimizer": "sgd", "weight_decay": 0.0}
BAGGING = {"name": "tree_bagging", "args": {"params": {"max_depth": 2, "eta": 0.3}, "num_sites": 3}}


def _server(tmp_path: Path, schema: dict) -> FLContext:
    for folder in ("startup", "local"):  # what FLARE checks a workspace has
        (tmp_path / "server" / folder).mkdir(parents=True)
    fl_ctx = site_context(tmp_path / "server", "server", "job1")
    run_dir = Path(fl_ctx.get_engine().get_workspace().get_run_dir("job1"))
    (run_dir / C.EHR_SCHEMA_FILE).write_text(json.dumps(schema))
    return fl_ctx


def _contribution(site: str, weights: dict, rnd: int | None = None) -> object:
    """A site's trees as ScatterAndGather hands them over: the round they were grown for in a cookie."""
    shareable = DXO(data_kind=DataKind.WEIGHTS, data=weights).to_shareable()
    shareable.set_peer_props({ReservedKey.IDENTITY_NAME: site})
    shareable.add_cookie(AppConstants.CONTRIBUTION_ROUND, rnd)
    return shareable


def test_three_bagging_rounds_grow_one_tree_per_site_and_every_site_scores_the_ensemble(
    tmp_path: Path,
) -> None:
    task, sites, schema = tree_federation(tmp_path)
    fl_ctx = _server(tmp_path, schema)
    persistor, aggregator = TreeModelPersistor(), TreeBaggingAggregator()
    learnable = persistor.load_model(fl_ctx)
    assert TreeModel(model_json(learnable[ModelLearnableKey.WEIGHTS])).n_trees == 0
    runners = {
        name: SiteRunner(task, site, algorithms=[BAGGING], local=LOCAL, seed=0, settings={}, run_dir=None)
        for name, site in sites.items()
    }
    for rnd in range(3):
        fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, learnable, private=True, sticky=True)
        fl_ctx.set_prop(AppConstants.CURRENT_ROUND, rnd, private=True, sticky=True)
        weights = learnable[ModelLearnableKey.WEIGHTS]
        for name, runner in runners.items():
            state = runner.run_round(RoundInput(weights=weights, lr=None, round_index=rnd))
            sent = TreeModel(model_json(state.update))
            assert sent.n_trees == 1  # only the site's new tree leaves it
            assert state.lr == pytest.approx(0.1) and state.metrics[C.M_TRAIN_LOSS] > 0
            assert aggregator.accept(_contribution(name, state.update, rnd), fl_ctx)
        merged = from_shareable(aggregator.aggregate(fl_ctx)).data
        learnable = make_model_learnable(merged, {})
        persistor.save_model(learnable, fl_ctx)
        assert TreeModel(model_json(merged)).n_trees == 3 * (rnd + 1)
    saved = Path(fl_ctx.get_engine().get_workspace().get_run_dir("job1")) / MODEL_FILE
    assert TreeModel(saved.read_bytes()).n_trees == 9
    for runner in runners.values():
        metrics = runner.validate(learnable[ModelLearnableKey.WEIGHTS], n_bootstrap=20)
        assert metrics[C.M_N_TEST] == 20.0
        if metrics[C.M_AUC] is None:  # a class of fewer than 5 of the 20 test rows: withheld
            assert any(r.startswith("auc: fewer than 5") for r in metrics[C.M_SUPPRESSED])
        else:
            assert 0.0 <= metrics[C.M_AUC] <= 1.0


def test_the_aggregator_refuses_what_cannot_join_the_ensemble(tmp_path: Path) -> None:
    task, sites, schema = tree_federation(tmp_path)
    fl_ctx = _server(tmp_path, schema)
    learnable = TreeModelPersistor().load_model(fl_ctx)
    fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, learnable, private=True, sticky=True)
    aggregator = TreeBaggingAggregator()
    assert not aggregator.accept(_contribution("site-1", {"w": np.zeros(3, dtype=np.float32)}), fl_ctx)
    assert not aggregator.accept(_contribution("site-1", tree_weights(b"not json")), fl_ctx)
    other = TreeModelPersistor(base_score=0.3)  # another base score: its trees add up to another model
    wrong = other.load_model(_server(tmp_path / "other", schema))[ModelLearnableKey.WEIGHTS]
    assert not aggregator.accept(_contribution("site-2", wrong), fl_ctx)
    runner = SiteRunner(task, sites["site-3"], algorithms=[BAGGING], local=LOCAL, seed=0, settings={})
    state = runner.run_round(RoundInput(weights=learnable[ModelLearnableKey.WEIGHTS], lr=None, round_index=0))
    assert aggregator.accept(_contribution("site-3", state.update), fl_ctx)
    assert not aggregator.accept(_contribution("site-3", state.update), fl_ctx)  # a second one this round


def test_a_site_accepts_only_tree_parameters_within_their_ranges() -> None:
    assert check_params({"learning_rate": 0.05, "max_depth": 4})["eta"] == 0.05
    assert check_params({})["nthread"] == 1  # one thread per job, whatever the job asks
    with pytest.raises(ValueError) as err:
        check_params({"nthread": 64, "max_depth": 40, "objective": "reg:squarederror", "device": "cuda"})
    message = str(err.value)
    assert message.startswith("XGBoost parameters refused: nthread is not a parameter a site accepts")
    assert "max_depth must be a whole number in [1, 12]" in message
    assert (
        "objective must be one of ['binary:logistic']" in message and "device is not a parameter" in message
    )
    with pytest.raises(ValueError, match="runs alone; it cannot run with \\['fedprox'\\]"):
        build_algorithms([BAGGING, {"name": "fedprox", "args": {"mu": 0.1}}], LOCAL)


def test_tree_bagging_refuses_a_network_from_the_server(tmp_path: Path) -> None:
    task, sites, _ = tree_federation(tmp_path)
    site = sites["site-1"]
    runner = SiteRunner(task, site, algorithms=[BAGGING], local=LOCAL, seed=0, settings={})
    network = to_numpy(task.build_model(site))
    with pytest.raises(ValueError, match="tree_bagging needs a tree model from the server"):
        runner.run_round(RoundInput(weights=network, lr=None, round_index=0))


def test_late_trees_of_an_earlier_round_are_refused_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    task, sites, schema = tree_federation(tmp_path)
    fl_ctx = _server(tmp_path, schema)
    learnable = TreeModelPersistor().load_model(fl_ctx)
    fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, learnable, private=True, sticky=True)
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, 2, private=True, sticky=True)
    runner = SiteRunner(task, sites["site-1"], algorithms=[BAGGING], local=LOCAL, seed=0, settings={})
    state = runner.run_round(RoundInput(weights=learnable[ModelLearnableKey.WEIGHTS], lr=None, round_index=1))
    aggregator = TreeBaggingAggregator()
    assert not aggregator.accept(_contribution("site-1", state.update, 1), fl_ctx)
    reason = "It was grown for round 1, not the current 2."
    assert f"Rejected the trees of site-1 in round 2: {reason}" in caplog.text
    assert aggregator.accept(_contribution("site-1", state.update, 2), fl_ctx)  # the same trees, on time
    merged = from_shareable(aggregator.aggregate(fl_ctx)).data
    assert TreeModel(model_json(merged)).n_trees == 1  # the late copy was not appended
