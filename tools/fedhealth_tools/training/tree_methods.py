"""The XGBoost benchmark's four ways to train trees on aligned tabular sites (``make bench-xgboost``).

Every method trains up to the largest of ``rounds`` boosting (or federated) rounds once and returns
each site's predicted probabilities on its evaluation rows at every one of ``rounds`` (a
cross-validation scores all stopping points from one run), with its timings:

- :func:`centralized`: ``xgb.train`` on every site's training rows in one place.
- :func:`local_only`: each site trains on its own rows; its predictions are its own model's.
- :func:`federated_histogram`: XGBoost's row-split histogram training across the sites
  (:func:`fedhealth_tools.training.xgb_federated.run_federated_histogram`).
- :func:`bagging`: FLARE's tree-based bagging (:mod:`fedhealth.trees.bagging`), the sites in turn
  each round, the server's append after them; the bytes are those of the JSON messages.

Missing values stay NaN (the tree jobs' imputation ``none``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from fedhealth.trees.bagging import append_trees, bagging_params, site_round
from fedhealth.trees.model import load_booster
from fedhealth_tools.training.xgb_federated import run_federated_histogram

Split = tuple[np.ndarray, np.ndarray]
# rounds -> site -> probabilities on the site's evaluation rows
Checkpoints = dict[int, dict[str, np.ndarray]]
HistogramTrainer = Callable[[Sequence[Split], Mapping[str, Any], int], tuple[bytes, dict]]


@dataclass(frozen=True)
class SiteMatrices:
    """One site's aligned training and evaluation matrices (NaN for missing) and column names."""

    name: str
    train: Split
    evaluation: Split
    names: list[str] | None = None


def _dmatrix(split: Split, names: list[str] | None) -> xgb.DMatrix:
    x, y = split
    return xgb.DMatrix(x, label=y, missing=np.nan, feature_names=names)


def _predict(
    booster: xgb.Booster, sites: Sequence[SiteMatrices], rounds: Sequence[int], *, per_round: int = 1
):
    """Probabilities on every site's evaluation rows from the first ``r * per_round`` iterations."""
    out: Checkpoints = {}
    for r in rounds:
        out[r] = {
            s.name: booster.predict(_dmatrix(s.evaluation, s.names), iteration_range=(0, r * per_round))
            for s in sites
        }
    return out


def centralized(sites: Sequence[SiteMatrices], params: Mapping[str, Any], rounds: Sequence[int]):
    """One model on the pooled training rows; ``(checkpoints, {"seconds"})``."""
    started = time.perf_counter()
    x = np.vstack([s.train[0] for s in sites])
    y = np.concatenate([s.train[1] for s in sites])
    booster = xgb.train(dict(params), _dmatrix((x, y), sites[0].names), num_boost_round=max(rounds))
    seconds = time.perf_counter() - started
    return _predict(booster, sites, rounds), {"seconds": seconds}


def local_only(sites: Sequence[SiteMatrices], params: Mapping[str, Any], rounds: Sequence[int]):
    """Every site's own model, scored on its own evaluation rows; ``(checkpoints, {"seconds"})``."""
    started = time.perf_counter()
    out: Checkpoints = {r: {} for r in rounds}
    for site in sites:
        booster = xgb.train(dict(params), _dmatrix(site.train, site.names), num_boost_round=max(rounds))
        for r, probs in _predict(booster, [site], rounds).items():
            out[r].update(probs)
    return out, {"seconds": time.perf_counter() - started}


def federated_histogram(
    sites: Sequence[SiteMatrices],
    params: Mapping[str, Any],
    rounds: Sequence[int],
    *,
    trainer: HistogramTrainer = run_federated_histogram,
):
    """Row-split histogram training across the sites; ``(checkpoints, the trainer's stats)``."""
    model, stats = trainer([s.train for s in sites], dict(params), max(rounds))
    booster = load_booster(model)
    # the trainer's matrices carry no column names: the model predicts by position
    unnamed = [SiteMatrices(s.name, s.train, s.evaluation, None) for s in sites]
    return _predict(booster, unnamed, rounds), stats


def bagging(
    sites: Sequence[SiteMatrices],
    params: Mapping[str, Any],
    rounds: Sequence[int],
    *,
    num_parallel_tree: int = 1,
):
    """FLARE's tree-based bagging for ``max(rounds)`` rounds; ``(checkpoints, stats)``.

    ``stats``: ``seconds``, ``round_seconds`` (every site's boosting and the append, one after the
    other on this machine), ``upload_bytes_per_site_per_round`` (the new trees' JSON, mean over the
    rounds), ``download_bytes_per_site_per_round`` (the global model's JSON each site receives at the
    start of a round, mean over the rounds; it grows every round) and ``model_bytes`` (the final one).
    """
    site_params = bagging_params(params, num_sites=len(sites), num_parallel_tree=num_parallel_tree)
    model: bytes | None = None
    round_seconds, download, upload = [], [], {s.name: [] for s in sites}
    for _ in range(max(rounds)):
        started = time.perf_counter()
        download.append(0 if model is None else len(model))
        updates = []
        for site in sites:
            updates.append(site_round(model, *site.train, params=site_params, feature_names=site.names))
            upload[site.name].append(len(updates[-1]))
        model = append_trees(model, updates)
        round_seconds.append(time.perf_counter() - started)
    assert model is not None
    stats = {
        "seconds": float(sum(round_seconds)),
        "round_seconds": round_seconds,
        "upload_bytes_per_site_per_round": {k: float(np.mean(v)) for k, v in upload.items()},
        "download_bytes_per_site_per_round": float(np.mean(download)),
        "model_bytes": len(model),
    }
    return _predict(load_booster(model), sites, rounds, per_round=len(sites)), stats
