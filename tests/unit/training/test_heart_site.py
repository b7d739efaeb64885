"""HeartSite: one hospital's encoding, moments, scaling modes, training and evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedhealth.data.features import combine_moments, feature_names
from fedhealth.models.tabular import TabularNet
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import LocalTrainConfig

# site -> (n_train, n_test, training rows with chol recorded as 0)
SITES = {
    "cleveland": (199, 104, 0),
    "hungary": (172, 89, 0),
    "switzerland": (30, 16, 30),
    "va_long_beach": (85, 45, 22),
}
CHOL = feature_names(True).index("chol")


def _site(heart_tables: dict, name: str, **kwargs: object) -> HeartSite:
    train, test = heart_tables[name]
    return HeartSite(name, train, test, **kwargs)


@pytest.mark.parametrize(("name", "sizes"), SITES.items())
def test_moments_count_observed_training_values(heart_tables: dict, name: str, sizes: tuple) -> None:
    n_train, n_test, chol_zeros = sizes
    site = _site(heart_tables, name)
    assert (site.n_train, site.n_test, site.n_features) == (n_train, n_test, 14)
    counts = site.moments()["count"]
    assert len(counts) == 14
    assert [c for i, c in enumerate(counts) if i != CHOL] == [float(n_train)] * 13
    assert counts[CHOL] == n_train - chol_zeros
    assert site.moments()["sum"][-1] == chol_zeros  # the indicator column


def test_moments_without_chol_indicator(heart_tables: dict) -> None:
    site = _site(heart_tables, "switzerland", chol_zero_as_missing=False)
    assert site.n_features == 13 and site.feature_names == feature_names(False)
    assert site.moments()["count"] == [30.0] * 13


def test_global_mode_refuses_data_before_scaling(heart_tables: dict) -> None:
    site = _site(heart_tables, "hungary")
    assert site.scaler is None
    for split in ("train", "test"):
        with pytest.raises(RuntimeError, match="federated statistics") as info:
            site.arrays(split)
        assert "hungary" in str(info.value)
    with pytest.raises(RuntimeError, match="no feature scaling yet"):
        site.train_round(TabularNet(in_features=14), LocalTrainConfig(lr=0.1))


def test_global_mode_uses_the_given_scaling(heart_tables: dict) -> None:
    site = _site(heart_tables, "cleveland")
    stats = combine_moments([site.moments(), _site(heart_tables, "hungary").moments()])
    site.set_scaling(stats)
    x, y = site.arrays("train")
    assert x.shape == (199, 14) and y.shape == (199,)
    np.testing.assert_allclose(site.scaler.mean, stats["mean"])
    assert abs(float(x[:, 0].mean())) > 1e-3  # scaled by the pooled mean, not its own


def test_site_mode_works_immediately_and_ignores_global_stats(heart_tables: dict) -> None:
    site = _site(heart_tables, "cleveland", scaling="site")
    x, _ = site.arrays("train")
    np.testing.assert_allclose(x[:, :11].mean(0), 0.0, atol=1e-5)
    mean_before = site.scaler.mean.copy()
    site.set_scaling({"mean": [0.0] * 14, "std": [1.0] * 14})
    np.testing.assert_array_equal(site.scaler.mean, mean_before)


def test_bad_scaling_mode(heart_tables: dict) -> None:
    with pytest.raises(ValueError, match="scaling must be one of"):
        _site(heart_tables, "cleveland", scaling="pooled")


def test_site_mode_works_for_switzerland_with_chol_indicator(heart_tables: dict) -> None:
    site = _site(heart_tables, "switzerland", scaling="site")
    x, _ = site.arrays("train")
    assert x.shape == (30, 14) and not np.isnan(x).any()
    # FLamby's behaviour for a constant feature: it scales to 0 (std 0, eps guard).
    assert np.all(x[:, 3] == 0) and np.all(x[:, 13] == 0)


def test_train_round_and_evaluate(heart_tables: dict) -> None:
    site = _site(heart_tables, "va_long_beach", scaling="site")
    model = TabularNet(in_features=14, seed=0)
    before = site.evaluate(model)
    stats = site.train_round(model, LocalTrainConfig(lr=0.05, local_epochs=3), generator=torch.Generator())
    assert stats["n_train"] == 85.0 and stats["steps"] == 3 * math.ceil(85 / 4)
    after = site.evaluate(model)
    assert (after["n_train"], after["n_test"]) == (85.0, 45.0)
    assert 0.0 <= after["accuracy"] <= 1.0 and 0.0 <= after["auc"] <= 1.0
    assert after["loss"] < before["loss"]


def test_evaluate_one_class_training_split_gives_nan_auc(heart_tables: dict) -> None:
    site = _site(heart_tables, "switzerland", chol_zero_as_missing=False, scaling="site")
    assert set(np.unique(site.train.labels)) == {1.0}
    metrics = site.evaluate(TabularNet(in_features=13, seed=0), split="train")
    assert math.isnan(metrics["auc"])
    assert 0.0 <= metrics["accuracy"] <= 1.0
