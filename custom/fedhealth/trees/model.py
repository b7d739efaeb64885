"""An XGBoost model as the kit's model: scored by the same validation code as the neural models.

A tree ensemble travels as XGBoost's own JSON model (``Booster.save_raw("json")``) under one key,
``xgboost_json``, as a ``uint8`` array (what FLARE serialises without pickling). :class:`TreeModel` wraps it
as a parameter-free ``torch.nn.Module`` whose output is the booster's margin (log-odds), so
:func:`fedhealth.training.loops.predict` (sigmoid), the loss, the bootstrap intervals, the cross-site
matrix and the deployment gate treat it exactly as they treat a neural network's logits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

import numpy as np
import torch
import xgboost as xgb
from torch import nn

TREE_KEY = "xgboost_json"
_XGB_NAME = re.compile(r"^[^\[\]<]+$")  # XGBoost refuses feature names with '[', ']' or '<'
MODEL_FILE = "xgboost_model.json"  # the exported model in the server's run folder (XGBoost's own format)


def xgboost_names(columns: list[str]) -> list[str] | None:
    """The schema's column names as XGBoost feature names, or ``None`` when XGBoost would refuse one."""
    return list(columns) if all(_XGB_NAME.match(c) for c in columns) else None


def is_tree_weights(weights: Mapping[str, object]) -> bool:
    """Whether ``weights`` hold a tree ensemble rather than a network's tensors."""
    return TREE_KEY in weights


def tree_weights(model_json: bytes) -> dict[str, np.ndarray]:
    """XGBoost JSON model bytes as the message data (one ``uint8`` array)."""
    return {TREE_KEY: np.frombuffer(bytes(model_json), dtype=np.uint8).copy()}


def model_json(weights: Mapping[str, object]) -> bytes:
    """The XGBoost JSON model bytes inside ``weights`` (see :func:`tree_weights`)."""
    value = weights.get(TREE_KEY)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError(f"'{TREE_KEY}' must hold the XGBoost JSON model as a 1-D uint8 array")
    return array.tobytes()


def fingerprint(model: bytes) -> str:
    """SHA-256 of a JSON model (the sites of a histogram job must hold the same one)."""
    return hashlib.sha256(model).hexdigest()


def load_booster(model: bytes) -> xgb.Booster:
    """A booster from XGBoost JSON bytes, or ``ValueError`` saying the bytes are not such a model."""
    booster = xgb.Booster({"nthread": 1})
    try:
        booster.load_model(bytearray(model))
    except xgb.core.XGBoostError as exc:
        raise ValueError("the tree model is not a readable XGBoost JSON model") from exc
    return booster


class TreeModel(nn.Module):
    """A tree ensemble behind the network interface: ``forward(x)`` is the margin (log-odds), shape ``(n,)``.

    Missing inputs are ``NaN`` (XGBoost's default direction at each split).
    """

    def __init__(self, model: bytes) -> None:
        super().__init__()
        self.model_json = bytes(model)
        self.booster = load_booster(self.model_json)

    @property
    def in_features(self) -> int:
        return int(self.booster.num_features())

    @property
    def n_trees(self) -> int:
        return int(self.booster.num_boosted_rounds())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = np.asarray(x.detach().cpu().numpy(), dtype=np.float32)
        # the columns are the aligned schema's (checked by the task); the model's names go with them
        matrix = xgb.DMatrix(values, missing=np.nan, feature_names=self.booster.feature_names)
        margin = self.booster.predict(matrix, output_margin=True)
        return torch.as_tensor(np.asarray(margin, dtype=np.float32).reshape(-1))

    def replace(self, model: bytes) -> None:
        """Hold another JSON model in place (a site's ensemble after its round's new trees)."""
        self.booster = load_booster(bytes(model))
        self.model_json = bytes(model)


def tree_from_weights(weights: Mapping[str, object]) -> TreeModel:
    """The :class:`TreeModel` a message carries."""
    return TreeModel(model_json(weights))


def boost_more(model: TreeModel, x: np.ndarray, y: np.ndarray, *, rounds: int, eta: float) -> TreeModel:
    """``model`` with ``rounds`` more trees grown on ``(x, y)`` (a site's fine-tuning of a tree model).

    The new trees keep the model's own tree parameters (depth, objective) and use learning rate ``eta``.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}.")
    learner = json.loads(model.booster.save_config())["learner"]
    train = learner["gradient_booster"]["tree_train_param"]
    params = {
        "objective": learner["objective"]["name"],
        "max_depth": int(train["max_depth"]),
        "min_child_weight": float(train["min_child_weight"]),
        "eta": eta,
        "tree_method": "hist",
        "nthread": 1,
    }
    matrix = xgb.DMatrix(x, label=y, missing=np.nan, feature_names=model.booster.feature_names)
    booster = xgb.train(params, matrix, rounds, xgb_model=load_booster(model.model_json))
    return TreeModel(bytes(booster.save_raw("json")))


def empty_model(columns: list[str], *, base_score: float = 0.5, num_parallel_tree: int = 1) -> bytes:
    """A binary model with no trees over ``columns`` (predicts ``base_score``): a bagging job's round 0."""
    if not columns:
        raise ValueError("a tree model needs at least one feature column")
    nothing = np.full((1, len(columns)), np.nan)
    matrix = xgb.DMatrix(nothing, label=[0.0], feature_names=xgboost_names(columns))
    params = {
        "objective": "binary:logistic",
        "base_score": base_score,
        "num_parallel_tree": num_parallel_tree,
        "nthread": 1,
    }
    return bytes(xgb.train(params, matrix, 0).save_raw("json"))
