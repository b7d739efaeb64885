"""Clustered FL: two planted groups of sites with opposite label maps are found from their updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedhealth.algorithms.clustering import (
    bipartition,
    cosine_similarity,
    cross_similarity,
    metadata_clusters,
    should_split,
)
from fedhealth.models.tabular import TabularNet
from fedhealth.training.loops import LocalTrainConfig, train_local

# (sites in group A (label = x0 > 0), sites in group B (label = x0 <= 0), seed)
PLANTED = [(2, 2, 0), (3, 2, 1), (1, 4, 2), (3, 3, 3)]


def site_updates(n_a: int, n_b: int, seed: int) -> tuple[list[dict], list[int]]:
    """One epoch of logistic regression from a shared start at every site; group id of each site."""
    rng = np.random.default_rng(seed)
    groups = [0] * n_a + [1] * n_b
    order = rng.permutation(len(groups))
    start = TabularNet(in_features=4, arch="logreg", seed=seed)
    base = {k: v.detach().numpy().copy() for k, v in start.state_dict().items()}
    updates = []
    for i in order:
        x = rng.normal(size=(60, 4)).astype("float32")
        y = (x[:, 0] > 0).astype("float32")
        y = y if groups[i] == 0 else 1 - y
        model = TabularNet(in_features=4, arch="logreg", seed=seed)
        train_local(
            model,
            x,
            y,
            LocalTrainConfig(lr=0.1, local_epochs=1),
            generator=torch.Generator().manual_seed(int(i)),
        )
        updates.append({k: v.detach().numpy() - base[k] for k, v in model.state_dict().items()})
    return updates, [groups[i] for i in order]


@pytest.mark.parametrize(("n_a", "n_b", "seed"), PLANTED)
def test_bipartition_recovers_the_planted_groups(n_a, n_b, seed):
    updates, groups = site_updates(n_a, n_b, seed)
    sim = cosine_similarity(updates)
    first, second = bipartition(sim)
    found = {frozenset(first), frozenset(second)}
    truth = {frozenset(i for i, g in enumerate(groups) if g == k) for k in (0, 1)}
    assert found == truth
    assert cross_similarity(sim, first, second) < 0  # opposite label maps: updates point apart
    assert should_split(updates, [1.0] * len(updates), eps_mean=10.0, eps_max=0.0)


@pytest.mark.parametrize(
    ("vectors", "expected"),
    [
        ([[1, 0], [2, 0], [-1, 0]], [[1, 2, -1], [2, 1, -1], [-1, -1, 1]]),
        ([[1, 0], [0, 3]], [[1, 0], [0, 1]]),
        ([[0, 0], [1, 1]], [[0, 0], [0, 1]]),  # a zero update is similar to nothing
    ],
)
def test_cosine_similarity_by_hand(vectors, expected):
    sim = cosine_similarity([{"w": np.asarray(v, float)} for v in vectors])
    np.testing.assert_allclose(sim, np.clip(np.asarray(expected, float), -1, 1), atol=1e-12)


@pytest.mark.parametrize(
    ("eps_mean", "eps_max", "expected"), [(0.5, 0.5, True), (0.04, 0.5, False), (0.5, 2.0, False)]
)
def test_split_criterion(eps_mean, eps_max, expected):
    updates = [{"w": np.array([1.0, 0.0])}, {"w": np.array([-0.9, 0.0])}]  # mean norm 0.05, max norm 1
    assert should_split(updates, [1.0, 1.0], eps_mean=eps_mean, eps_max=eps_max) is expected


def test_metadata_clusters_group_by_declared_fields():
    meta = {
        "a": {"scanner": "ge", "type": "teaching"},
        "b": {"scanner": "siemens", "type": "teaching"},
        "c": {"scanner": "ge", "type": "community"},
    }
    assert metadata_clusters(meta, ["scanner"]) == [["a", "c"], ["b"]]
    assert metadata_clusters(meta, ["type"]) == [["a", "b"], ["c"]]
    with pytest.raises(ValueError, match="Site 'a' does not declare metadata \\['region'\\]"):
        metadata_clusters(meta, ["region"])


def test_bipartition_refuses_a_single_site():
    with pytest.raises(ValueError, match="at least two sites"):
        bipartition(np.ones((1, 1)))
