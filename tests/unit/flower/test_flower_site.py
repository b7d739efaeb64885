"""The Flower apps' site and server steps over the kit's core (no FLARE, no Flower).

The site's state between messages (shuffling generator, schema) must make a site rebuilt for every
message train exactly as one long-lived site does: that is what lets the Flower apps, whose client
processes come and go, reproduce the kit's FLARE run number for number.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fedhealth.flower.job import kit_job_folder, read_job
from fedhealth.flower.site import FlowerSite, aggregate, align_schema, initial_weights, site_location
from fedhealth.models.image_model import ImageModel
from fedhealth_tools.peers.sites import heart_sites

HEART = read_job(kit_job_folder("heart_fedprox"))
MEAN = {"rule": "mean", "max_norm_ratio": 10.0}


@pytest.fixture(scope="module")
def heart_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return heart_sites(tmp_path_factory.mktemp("heart"))


def _profiles(folders: dict[str, Path]) -> dict[str, dict]:
    return {n: FlowerSite(HEART, n, f).profile(HEART.alignment.min_cell) for n, f in folders.items()}


@pytest.fixture(scope="module")
def schema(heart_folders: dict[str, Path]) -> dict:
    profiles = {
        n: FlowerSite(HEART, n, f).profile(HEART.alignment.min_cell) for n, f in heart_folders.items()
    }
    return align_schema(HEART, profiles)[1]


def test_the_schema_the_sites_get_has_no_per_site_counts(heart_folders: dict[str, Path]) -> None:
    profiles = {
        n: FlowerSite(HEART, n, f).profile(HEART.alignment.min_cell) for n, f in heart_folders.items()
    }
    full, for_sites = align_schema(HEART, profiles)
    assert sorted(full["sites"]) == sorted(heart_folders) and "sites" not in for_sites
    assert for_sites["columns"] == full["columns"] and len(full["columns"]) > 13
    with pytest.raises(ValueError, match="needs 3 sites' profiles, 2 answered"):
        align_schema(HEART, dict(list(profiles.items())[:2]))


def test_a_site_rebuilt_for_every_message_trains_as_one_long_lived_site(
    heart_folders: dict[str, Path], schema: dict
) -> None:
    name, folder = "hungary", heart_folders["hungary"]
    weights = initial_weights(HEART, schema)
    kept = FlowerSite(HEART, name, folder)
    kept.set_schema(schema)
    state = None
    for r in range(3):
        ours = kept.train(weights, round_index=r, num_rounds=3)
        fresh = FlowerSite(HEART, name, folder)  # a new process: only the saved state carries over
        if state is None:
            fresh.set_schema(schema)
        else:
            fresh.restore(state)
        theirs = fresh.train(weights, round_index=r, num_rounds=3)
        state = fresh.state()
        for key in ours.weights:
            np.testing.assert_array_equal(ours.weights[key], theirs.weights[key])
        assert ours.n_train == theirs.n_train > 0 and ours.steps == theirs.steps > 0
        assert ours.metrics["lr"] == pytest.approx(HEART.lr * HEART.gamma**r)
    without_state = FlowerSite(HEART, name, folder)
    without_state.set_schema(schema)
    lost = without_state.train(weights, round_index=3, num_rounds=4)
    kept_next = kept.train(weights, round_index=3, num_rounds=4)
    assert any(not np.array_equal(lost.weights[k], kept_next.weights[k]) for k in lost.weights)


def test_validate_reports_the_kits_metrics(heart_folders: dict[str, Path], schema: dict) -> None:
    site = FlowerSite(dataclasses.replace(HEART, n_bootstrap=50), "cleveland", heart_folders["cleveland"])
    site.set_schema(schema)
    metrics = site.validate(initial_weights(HEART, schema))
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["auc"] <= 1.0
    assert metrics["n_test"] == metrics["intervals"]["n"] == len(site.site.arrays("test")[1]) > 0


def test_initial_weights_are_the_persistors_seeded_models(schema: dict) -> None:
    first, again = initial_weights(HEART, schema), initial_weights(HEART, schema)
    assert [v.shape[-1] for v in first.values() if v.ndim == 2][0] == len(schema["columns"])
    assert all(np.array_equal(first[k], again[k]) for k in first)
    with pytest.raises(ValueError, match="width comes from the aligned schema"):
        initial_weights(HEART, None)
    cxr_job = read_job(kit_job_folder("cxr_fedavg"))
    cxr = initial_weights(cxr_job)
    model = ImageModel(**cxr_job.model[1]).state_dict()
    assert list(cxr) == list(model) and all(np.array_equal(cxr[k], model[k].numpy()) for k in cxr)


def test_aggregate_is_the_sample_weighted_mean_in_the_global_dtypes() -> None:
    start = {"w": np.zeros(2, dtype=np.float32), "count": np.array(10, dtype=np.int64)}
    results = {
        "a": ({"w": np.array([1.0, 2.0], np.float32), "count": np.array(12, np.int64)}, 1.0),
        "b": ({"w": np.array([4.0, 8.0], np.float32), "count": np.array(13, np.int64)}, 3.0),
    }
    new, rejected = aggregate(start, results, MEAN)
    assert rejected == {}
    np.testing.assert_allclose(new["w"], [3.25, 6.5])
    assert new["w"].dtype == np.float32 and new["count"].dtype == np.int64 and int(new["count"]) == 13


def test_aggregate_leaves_out_an_extreme_update_and_a_malformed_one() -> None:
    start = {"w": np.zeros(3, dtype=np.float32)}
    results = {s: ({"w": np.full(3, v, np.float32)}, 1.0) for s, v in (("a", 1.0), ("b", 1.1), ("c", 0.9))}
    results["big"] = ({"w": np.full(3, 1000.0, np.float32)}, 1.0)
    results["bad"] = ({"w": np.full(2, 1.0, np.float32)}, 1.0)
    new, rejected = aggregate(start, results, MEAN)
    assert sorted(rejected) == ["bad", "big"]
    np.testing.assert_allclose(new["w"], np.full(3, 1.0), rtol=1e-6)


def test_site_location_in_order_node_config_environment_flare_simulation(tmp_path: Path) -> None:
    flare_app = tmp_path / "kit" / "job-1" / "app_hungary"
    flare_app.mkdir(parents=True)
    (tmp_path / "kit" / "local").mkdir()
    sites = tmp_path / "sites.json"
    sites.write_text('[{"name": "a", "root": "/r/a"}, {"name": "b", "root": "/r/b"}]')
    node = {"site-name": "cleveland", "site-root": "/srv/site"}
    env = {"FEDHEALTH_SITE_NAME": "switzerland", "FEDHEALTH_SITE_ROOT": "/srv/ch"}
    run = {"sites-file": str(sites)}
    assert site_location(node, run, cwd=flare_app, environ=env) == ("cleveland", Path("/srv/site"))
    assert site_location({"partition-id": 1}, run, cwd=flare_app, environ=env) == (
        "switzerland",
        Path("/srv/ch"),
    )
    assert site_location({"partition-id": 1}, run, cwd=flare_app, environ={}) == ("hungary", tmp_path / "kit")
    assert site_location({"partition-id": 1}, run, cwd=tmp_path, environ={}) == ("b", Path("/r/b"))
    with pytest.raises(ValueError, match="names no site"):
        site_location({"partition-id": 1}, {}, cwd=tmp_path, environ={})
