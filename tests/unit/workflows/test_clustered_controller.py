"""ClusteredController's regrouping: split by update similarity, or group by declared metadata."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, MetaKey
from nvflare.apis.fl_context import FLContext

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


NAN = float("nan")
# (how site c's result is broken, the start of the recorded reason)
BAD_UPDATES = [
    (
        lambda d: {**d, "w": np.array([NAN, 0.1, 0.0])},
        "Parameter w has 1 non-finite value(s) (NaN or Inf) out of 3.",
    ),
    (lambda d: {**d, "w": np.zeros(4)}, "Parameter w has shape (4,) but the global model's is (3,)."),
    (lambda d: {"w": d["w"]}, "The update lacks parameter(s) b of the global model."),
    (lambda d: {k: 100 * v for k, v in d.items()}, "Its update norm"),
]


def _broken(corrupt) -> dict[str, DXO]:
    results = _results()
    c = results["c"]
    results["c"] = DXO(DataKind.WEIGHTS, data=corrupt(c.data), meta=dict(c.meta))
    return results


@pytest.mark.parametrize(("corrupt", "reason"), BAD_UPDATES)
def test_a_malformed_update_is_rejected_by_site_and_left_out_of_the_average(corrupt, reason):
    controller = _controller(split_round=5)
    results = _broken(corrupt)
    accepted = controller._screen(results, dict.fromkeys(SITES, START), 3, FLContext())
    assert sorted(accepted) == ["a", "b", "d"]
    assert [(r["site"], r["round"]) for r in controller.rejections] == [("c", 3)]
    assert controller.rejections[0]["reason"].startswith(reason)
    clusters, models = controller._next_clusters([sorted(SITES)], [START], accepted, 3, metadata_from=results)
    assert clusters == [sorted(SITES)]  # c stays and gets the next model
    n = {s: SITES[s][1] for s in ("a", "b", "d")}
    want = sum(n[s] * np.asarray(SITES[s][0]) for s in n) / sum(n.values())
    np.testing.assert_allclose(models[0]["w"], want)
    assert np.isfinite(models[0]["w"]).all()


def test_a_cluster_with_a_rejected_site_does_not_split_and_metadata_still_groups_it():
    results = _broken(BAD_UPDATES[0][0])
    split = _controller(split_round=0)
    accepted = split._screen(results, dict.fromkeys(SITES, START), 0, FLContext())
    assert split._next_clusters([sorted(SITES)], [START], accepted, 0, metadata_from=results)[0] == [
        sorted(SITES)
    ]
    by_region = _controller(cluster_by=["region"], split_round=0)
    clusters, models = by_region._next_clusters([sorted(SITES)], [START], accepted, 0, metadata_from=results)
    assert clusters == [["a", "b"], ["c", "d"]]
    assert np.isfinite(models[1]["w"]).all()


def test_a_bad_sample_weight_and_a_non_weights_result_are_rejected():
    results = _results()
    results["a"].set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, "many")
    results["b"] = DXO(DataKind.METRICS, data={"auc": 0.8})
    controller = _controller()
    accepted = controller._screen(results, dict.fromkeys(SITES, START), 1, FLContext())
    assert sorted(accepted) == ["c", "d"]
    assert [r["reason"] for r in controller.rejections] == [
        "Its NUM_STEPS_CURRENT_ROUND weight 'many' is not a positive number.",
        "It holds METRICS without parameters; WEIGHTS are expected.",
    ]


def test_max_norm_ratio_below_one_is_refused():
    with pytest.raises(ValueError, match="max_norm_ratio must be at least 1 or None"):
        _controller(max_norm_ratio=0.5)
