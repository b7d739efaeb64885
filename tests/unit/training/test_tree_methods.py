"""The XGBoost benchmark's methods: histogram training across sites is centralized training on the union.

Two synthetic sites of 80 and 50 patients, a fifth of the values missing; no row subsampling, so a
row-split histogram run and ``xgb.train`` on the pooled rows build the same trees (the quantile cuts
are exact at this size).
"""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth_tools.training import tree_methods
from fedhealth_tools.training.tree_methods import SiteMatrices
from fedhealth_tools.training.xgb_federated import run_federated_histogram

PARAMS = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 2, "eta": 0.3, "nthread": 1}
ROUNDS = (3, 8)


def _sites() -> list[SiteMatrices]:
    rng = np.random.default_rng(3)
    out = []
    for name, rows in (("a", 80), ("b", 50)):
        x = rng.normal(size=(rows, 4))
        y = (x[:, 0] + rng.normal(scale=0.5, size=rows) > 0).astype(np.float32)
        x[rng.random(x.shape) < 0.2] = np.nan
        out.append(SiteMatrices(name, (x[:40], y[:40]), (x[40:], y[40:])))
    return out


def test_histogram_training_across_sites_equals_centralized_training() -> None:
    sites = _sites()
    federated, stats = tree_methods.federated_histogram(sites, PARAMS, ROUNDS)
    pooled, _ = tree_methods.centralized(sites, PARAMS, ROUNDS)
    for r in ROUNDS:
        for s in sites:
            assert np.allclose(federated[r][s.name], pooled[r][s.name], atol=1e-6)
    assert not np.allclose(federated[3]["a"], federated[8]["a"])
    assert len(stats["round_seconds"]) == max(ROUNDS)
    assert stats["rows_per_site"] == [40, 40] and stats["address"].startswith("127.0.0.1:")
    traffic = stats["bytes_per_site_per_round"]  # the loopback tracker counts what each site sends
    assert traffic["first_round_from_site"] > traffic["from_site"] > 0 and traffic["to_site"] > 0


def test_bagging_grows_num_sites_trees_a_round_and_counts_its_messages() -> None:
    sites = _sites()
    probs, stats = tree_methods.bagging(sites, {**PARAMS, "base_score": 0.5}, ROUNDS)
    assert set(probs) == set(ROUNDS) and all(len(probs[r]["b"]) == 10 for r in ROUNDS)
    assert len(stats["round_seconds"]) == max(ROUNDS)
    assert all(v > 0 for v in stats["upload_bytes_per_site_per_round"].values())
    assert stats["model_bytes"] > stats["download_bytes_per_site_per_round"] > 0


def test_local_only_scores_each_site_with_its_own_model() -> None:
    sites = _sites()
    alone, _ = tree_methods.local_only(sites[:1], PARAMS, ROUNDS)
    both, _ = tree_methods.local_only(sites, PARAMS, ROUNDS)
    assert np.allclose(alone[8]["a"], both[8]["a"])


def test_histogram_training_needs_two_sites() -> None:
    (site, *_) = _sites()
    with pytest.raises(ValueError, match=">= 2 sites"):
        run_federated_histogram([site.train], PARAMS, 3)
