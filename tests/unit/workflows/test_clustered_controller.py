"""ClusteredController's regrouping: split by update similarity, or group by declared metadata."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, MetaKey

from fedhealth import constants as C
from fedhealth.workflows.clustered_controller import ClusteredController

START = {"w": np.zeros(3), "b": np.zeros(1)}
# site -> (update direction, samples, metadata)
SITES = {
    "a": ([1.0, 0.2, 0.0], 10, {"region": "us"}),
    "b": ([0.9, 0.0, 0.1], 30, {"region": "us"}),
    "c": ([-1.0, 0.1, 0.0], 20, {"region": "europe"}),
    "d": ([-0.8, -0.1, 0.0], 40, {"region": "europe"}),
}
# (round, split_round, threshold, expected clusters)
SPLITS = [
    (0, 0, 0.0, [["a", "b"], ["c", "d"]]),
    (2, 5, 0.0, [["a", "b", "c", "d"]]),  # too early
    (5, 5, -0.99, [["a", "b", "c", "d"]]),  # groups not far enough apart
]
BAD = [
    ({"num_rounds": 0}, "at least 1"),
    ({"lr": 0.0}, "lr > 0"),
    ({"split_threshold": 2.0}, "cosine in"),
]


def _results() -> dict[str, DXO]:
    out = {}
    for name, (direction, n, meta) in SITES.items():
        dxo = DXO(DataKind.WEIGHTS, data={"w": np.asarray(direction), "b": np.asarray([n / 100])})
        dxo.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, n)
        dxo.set_meta_prop(C.META_SITE_METADATA, meta)
        out[name] = dxo
    return out


def _controller(**kwargs: object) -> ClusteredController:
    return ClusteredController(**{"num_rounds": 10, "min_clients": 4, "lr": 0.1, **kwargs})


@pytest.mark.parametrize(("r", "split_round", "threshold", "expected"), SPLITS)
def test_split_by_update_similarity(r, split_round, threshold, expected):
    controller = _controller(split_round=split_round, split_threshold=threshold)
    clusters, models = controller._next_clusters([sorted(SITES)], [START], _results(), r)
    assert clusters == expected
    for group, model in zip(clusters, models, strict=True):
        n = np.array([SITES[s][1] for s in group], float)
        want = sum(ni * np.asarray(SITES[s][0]) for ni, s in zip(n, group, strict=True)) / n.sum()
        np.testing.assert_allclose(model["w"], want)


def test_no_more_than_max_clusters():
    controller = _controller(split_round=0, max_clusters=2)
    clusters = [["a", "b"], ["c", "d"]]
    again, _ = controller._next_clusters(clusters, [START, START], _results(), 3)
    assert again == clusters


@pytest.mark.parametrize(
    ("r", "split_round", "regrouped"),
    [(0, 0, True), (0, 1, True), (2, 3, True), (1, 3, False), (2, 2, False)],
)
def test_metadata_clusters_start_at_their_round(r, split_round, regrouped):
    controller = _controller(cluster_by=["region"], split_round=split_round)
    clusters, models = controller._next_clusters([sorted(SITES)], [START], _results(), r)
    if regrouped:
        assert clusters == [["a", "b"], ["c", "d"]]
        np.testing.assert_allclose(models[0]["w"], models[1]["w"])  # both start from the shared average
    else:
        assert clusters == [sorted(SITES)]


def test_missing_metadata_names_the_site():
    results = _results()
    results["c"].remove_meta_props([C.META_SITE_METADATA])
    with pytest.raises(ValueError, match="Site 'c' does not declare metadata"):
        _controller(cluster_by=["region"], split_round=0)._next_clusters([sorted(SITES)], [START], results, 0)


@pytest.mark.parametrize(("kwargs", "message"), BAD)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _controller(**kwargs)
