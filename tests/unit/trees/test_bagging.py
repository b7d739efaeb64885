"""FLARE-style tree bagging: sites boost new trees from the global model, the server appends them.

Three synthetic sites of 60 patients with 5 features, a fifth of the values missing (NaN).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from fedhealth.trees.bagging import append_trees, bagging_params, site_round
from fedhealth.trees.model import TreeModel

BASE = {
    "objective": "binary:logistic",
    "max_depth": 2,
    "eta": 0.6,
    "base_score": 0.4,
    "nthread": 1,
    "seed": 0,
}
# (params, num_sites, num_parallel_tree, expected eta, expected num_parallel_tree)
PARAMS = [
    ({"eta": 0.6, "base_score": 0.5}, 3, 1, 0.2, 1),
    ({"learning_rate": 1.0, "base_score": 0.5}, 4, 2, 0.25, 2),
    ({"base_score": 0.5}, 1, 1, 0.3, 1),  # XGBoost's default eta
]
# (params, num_sites, num_parallel_tree, words in the error)
BAD_PARAMS = [
    ({"eta": 0.1}, 2, 1, "base_score"),
    ({"eta": 0.1, "base_score": 0.5}, 0, 1, "num_sites"),
    ({"eta": 0.1, "base_score": 0.5}, 2, 0, "num_parallel_tree"),
]


def _sites(n_sites: int = 3, rows: int = 60) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n_sites):
        x = rng.normal(size=(rows, 5))
        y = (x[:, 0] - x[:, 1] + rng.normal(scale=0.5, size=rows) > 0).astype(np.float32)
        x[rng.random(x.shape) < 0.2] = np.nan
        out.append((x, y))
    return out


def _margin(model: bytes, x: np.ndarray) -> np.ndarray:
    return TreeModel(model).booster.predict(xgb.DMatrix(x, missing=np.nan), output_margin=True)


def _trees(model: bytes) -> int:
    return int(json.loads(model)["learner"]["gradient_booster"]["model"]["gbtree_model_param"]["num_trees"])


def _rounds(sites, rounds: int, params: dict) -> list[bytes]:
    """The global model after each round."""
    site_params = bagging_params(params, num_sites=len(sites))
    model, history = None, []
    for _ in range(rounds):
        model = append_trees(model, [site_round(model, x, y, params=site_params) for x, y in sites])
        history.append(model)
    return history


@pytest.mark.parametrize(("params", "num_sites", "parallel", "eta", "expected_parallel"), PARAMS)
def test_site_params_scale_eta_by_the_number_of_sites(
    params, num_sites, parallel, eta, expected_parallel
) -> None:
    out = bagging_params(params, num_sites=num_sites, num_parallel_tree=parallel)
    assert out["eta"] == pytest.approx(eta)
    assert out["num_parallel_tree"] == expected_parallel
    assert "learning_rate" not in out


@pytest.mark.parametrize(("params", "num_sites", "parallel", "words"), BAD_PARAMS)
def test_site_params_refuse_what_cannot_add_up(params, num_sites, parallel, words) -> None:
    with pytest.raises(ValueError, match=words):
        bagging_params(params, num_sites=num_sites, num_parallel_tree=parallel)


def test_the_tree_count_grows_by_the_number_of_sites_every_round() -> None:
    history = _rounds(_sites(3), 4, BASE)
    assert [_trees(m) for m in history] == [3, 6, 9, 12]
    assert [TreeModel(m).n_trees for m in history] == [3, 6, 9, 12]  # one boosting iteration per tree
    assert [len(json.loads(m)["learner"]["gradient_booster"]["model"]["trees"]) for m in history] == [
        3,
        6,
        9,
        12,
    ]


def test_the_appended_model_adds_every_sites_trees_to_the_global_margin() -> None:
    sites = _sites(3)
    params = bagging_params(BASE, num_sites=3)
    start = _rounds(sites, 2, BASE)[-1]
    updates = [site_round(start, x, y, params=params) for x, y in sites]
    merged = append_trees(start, updates)
    x = np.vstack([s[0] for s in sites])
    base = np.log(0.4 / 0.6)  # base_score 0.4 as a margin
    contributions = sum(_margin(u, x) - base for u in updates)
    assert np.allclose(_margin(merged, x), _margin(start, x) + contributions, atol=1e-5)
    assert not np.allclose(contributions, 0.0)


def test_a_site_starts_from_the_global_margin_and_sends_only_its_new_trees() -> None:
    (x, y), *_ = _sites(1)
    params = bagging_params(BASE, num_sites=2)
    start = _rounds(_sites(2), 1, BASE)[-1]
    update = site_round(start, x, y, params=params, local_rounds=2)
    assert _trees(update) == 2
    continued = xgb.train(
        params, xgb.DMatrix(x, label=y, missing=np.nan), 2, xgb_model=TreeModel(start).booster
    )
    expected = continued.predict(xgb.DMatrix(x, missing=np.nan), output_margin=True)
    assert np.allclose(_margin(append_trees(start, [update]), x), expected, atol=1e-5)


def test_the_sites_hessian_sums_do_not_leave_the_site() -> None:
    (x, y), *_ = _sites(1)
    update = json.loads(site_round(None, x, y, params=bagging_params(BASE, num_sites=1)))
    trees = update["learner"]["gradient_booster"]["model"]["trees"]
    assert all(h == 1.0 for tree in trees for h in tree["sum_hessian"])


def test_the_first_round_starts_from_the_first_sites_trees() -> None:
    sites = _sites(2)
    params = bagging_params(BASE, num_sites=2)
    first = [site_round(None, x, y, params=params) for x, y in sites]
    assert append_trees(None, first[:1]) == first[0]
    assert _trees(append_trees(None, first)) == 2


@pytest.mark.parametrize(
    ("change", "words"),
    [({"base_score": 0.5}, "base_score"), ({"objective": "binary:logitraw"}, "objective")],
)
def test_trees_that_cannot_add_up_are_refused(change: dict, words: str) -> None:
    (x, y), *_ = _sites(1)
    ours = site_round(None, x, y, params=bagging_params(BASE, num_sites=2))
    theirs = site_round(None, x, y, params=bagging_params({**BASE, **change}, num_sites=2))
    with pytest.raises(ValueError, match=words):
        append_trees(ours, [theirs])


def test_other_feature_counts_and_nothing_to_append_are_refused() -> None:
    (x, y), *_ = _sites(1)
    params = bagging_params(BASE, num_sites=2)
    with pytest.raises(ValueError, match="num_feature"):
        append_trees(site_round(None, x, y, params=params), [site_round(None, x[:, :4], y, params=params)])
    with pytest.raises(ValueError, match="at least one"):
        append_trees(None, [])
    with pytest.raises(ValueError, match="readable"):
        site_round(b"not a model", x, y, params=params)
