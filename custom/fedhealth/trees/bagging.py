"""Tree-based bagging across sites, FLARE-free: each site boosts new trees, the server appends them.

The semantics of NVIDIA FLARE's tree-based XGBoost (``nvflare.app_opt.xgboost.tree_based``: the
executor in ``bagging`` mode with the ``uniform`` learning-rate mode, and the bagging aggregator),
for sites that cannot run lock-step histogram rounds. Every round each site loads the global
ensemble, boosts ``num_parallel_tree`` new trees on its own rows from that ensemble's margin with
``eta / num_sites`` (:func:`bagging_params`, :func:`site_round`), and sends only the new trees; the
server appends every site's trees to the global model (:func:`append_trees`). The ensemble grows by
``num_sites × num_parallel_tree`` trees a round and its margin is the base margin plus the sum of
all trees, so appending a site's trees adds exactly that site's contribution.

What leaves a site: the new trees' split features and thresholds, default directions for missing
values and leaf values. The per-node hessian sums (``sum_hessian``, about the number of patients
under a node) are replaced by 1.0, as FLARE's executor does; prediction does not read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xgboost as xgb

# Fields of XGBoost's JSON model that must agree before two models' trees may be added up.
_COMPATIBLE = ("base_score", "num_feature", "num_class", "num_target")


def bagging_params(
    params: Mapping[str, Any], *, num_sites: int, num_parallel_tree: int = 1
) -> dict[str, Any]:
    """A site's XGBoost parameters for one bagging round: ``eta / num_sites``, ``num_parallel_tree`` trees.

    Args:
        params: the job's XGBoost parameters; ``eta`` (or ``learning_rate``) is the global learning rate
            and ``base_score`` must be set.
        num_sites: how many sites boost in every round.
        num_parallel_tree: trees each site adds per round.

    Raises:
        ValueError: ``num_sites`` or ``num_parallel_tree`` below 1, or no ``base_score``.
    """
    if num_sites < 1 or num_parallel_tree < 1:
        raise ValueError(f"num_sites ({num_sites}) and num_parallel_tree ({num_parallel_tree}) must be >= 1.")
    if params.get("base_score") is None:
        raise ValueError(
            "bagging needs a fixed base_score: XGBoost would otherwise estimate one per site from its own "
            "labels, and trees grown on different base margins do not add up to one model."
        )
    eta = float(params.get("eta", params.get("learning_rate", 0.3)))
    out = {k: v for k, v in params.items() if k != "learning_rate"}
    out.update(eta=eta / num_sites, num_parallel_tree=num_parallel_tree)
    return out


def site_round(
    global_model: bytes | None,
    x: np.ndarray,
    y: np.ndarray,
    *,
    params: Mapping[str, Any],
    feature_names: Sequence[str] | None = None,
    local_rounds: int = 1,
) -> bytes:
    """The trees one site boosts from the global model on its own rows, as XGBoost JSON holding only them.

    Args:
        global_model: the global ensemble (XGBoost JSON), or ``None`` in the first round.
        x: the site's training matrix, missing values as NaN.
        y: its 0/1 labels.
        params: the site's parameters for the round (:func:`bagging_params`).
        feature_names: the aligned schema's column names, if XGBoost accepts them.
        local_rounds: boosting rounds per federated round (each adds ``num_parallel_tree`` trees).

    Raises:
        ValueError: ``local_rounds`` below 1, or a global model XGBoost cannot read.
    """
    if local_rounds < 1:
        raise ValueError(f"local_rounds must be >= 1, not {local_rounds}.")
    train = xgb.DMatrix(
        x, label=y, missing=np.nan, feature_names=list(feature_names) if feature_names else None
    )
    booster = xgb.Booster(dict(params), [train])
    if global_model is not None:
        try:
            booster.load_model(bytearray(global_model))
        except xgb.core.XGBoostError as exc:
            raise ValueError("the global model is not a readable XGBoost JSON model") from exc
        booster.set_param(dict(params))  # loading a model resets the training parameters
    start = booster.num_boosted_rounds()
    for i in range(local_rounds):
        booster.update(train, start + i)
    end = start + local_rounds
    new = json.loads(booster[end - local_rounds : end].save_raw("json"))
    for tree in _gbtree(new)["trees"]:
        tree["sum_hessian"] = [1.0] * len(tree["sum_hessian"])
    return json.dumps(new).encode()


def append_trees(global_model: bytes | None, updates: Sequence[bytes]) -> bytes:
    """The global model with every site's new trees appended, in the order given.

    In the first round (``global_model`` ``None``) the first update is the starting ensemble.

    Raises:
        ValueError: nothing to append to or from, or an update whose base score, feature count,
            objective or trees per iteration differ from the global model's.
    """
    parsed = [json.loads(u) for u in updates]
    if global_model is None and not parsed:
        raise ValueError("append_trees needs a global model or at least one site's trees.")
    model = json.loads(global_model) if global_model is not None else parsed.pop(0)
    for update in parsed:
        _check_compatible(model, update)
        target, source = _gbtree(model), _gbtree(update)
        offset = int(target["gbtree_model_param"]["num_trees"])
        for i, tree in enumerate(source["trees"]):
            target["trees"].append({**tree, "id": offset + i})
        target["tree_info"].extend(source["tree_info"])
        target["iteration_indptr"].extend(offset + int(p) for p in source["iteration_indptr"][1:])
        target["gbtree_model_param"]["num_trees"] = str(offset + len(source["trees"]))
    return json.dumps(model).encode()


def _gbtree(model: dict) -> dict:
    booster = model["learner"]["gradient_booster"]
    if booster.get("name") != "gbtree":
        raise ValueError(f"bagging appends gbtree models, not {booster.get('name')!r}.")
    return booster["model"]


def _check_compatible(model: dict, update: dict) -> None:
    ours, theirs = model["learner"], update["learner"]
    for key in _COMPATIBLE:
        a, b = ours["learner_model_param"].get(key), theirs["learner_model_param"].get(key)
        if a != b:
            raise ValueError(f"a site's trees have {key} {b}, the global model {a}: they cannot be added up.")
    if ours["objective"]["name"] != theirs["objective"]["name"]:
        raise ValueError(
            f"a site's trees use objective {theirs['objective']['name']!r}, "
            f"the global model {ours['objective']['name']!r}."
        )
    a = _gbtree(model)["gbtree_model_param"]["num_parallel_tree"]
    b = _gbtree(update)["gbtree_model_param"]["num_parallel_tree"]
    if a != b:
        raise ValueError(f"a site boosts {b} parallel trees per iteration, the global model {a}.")
