"""Privacy-scope math: excluded layers carry no local information; noise has the asked spread."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.policy.update_rules import add_gaussian_noise, exclude_layers, update_deltas

LOCAL = {"net.weight": np.full((1, 4), 2.0, np.float32), "net.bias": np.array([3.0], np.float32)}
GLOBAL = {"net.weight": np.zeros((1, 4), np.float32), "net.bias": np.array([0.5], np.float32)}
# (layers, received, expected bias, expected weight)
EXCLUDE_CASES = [
    (["net.bias"], GLOBAL, [0.5], [[2.0] * 4]),  # full weights: the global value goes back
    (["net.bias"], None, [0.0], [[2.0] * 4]),  # differences: zero
    (["net.weight", "net.bias"], GLOBAL, [0.5], [[0.0] * 4]),
]
BAD_EXCLUDE = [
    (["net.gamma"], GLOBAL, "not in the model update"),
    (["net.bias"], {"net.weight": GLOBAL["net.weight"]}, "lacks it"),
    (["net.bias"], {"net.bias": np.zeros(2, np.float32)}, "shape"),
]


@pytest.mark.parametrize(("layers", "received", "bias", "weight"), EXCLUDE_CASES)
def test_exclude_layers(layers, received, bias, weight) -> None:
    out = exclude_layers(LOCAL, layers, received=received)
    np.testing.assert_array_equal(out["net.bias"], bias)
    np.testing.assert_array_equal(out["net.weight"], weight)
    assert out["net.bias"].dtype == np.float32 and sorted(out) == sorted(LOCAL)
    assert LOCAL["net.bias"][0] == 3.0  # the input is untouched


@pytest.mark.parametrize(("layers", "received", "message"), BAD_EXCLUDE)
def test_exclude_layers_refuses_bad_names_and_shapes(layers, received, message) -> None:
    with pytest.raises(ValueError, match=message):
        exclude_layers(LOCAL, layers, received=received)


def test_gaussian_noise_has_the_asked_spread_and_keeps_dtypes() -> None:
    big = {"w": np.zeros(200_000, np.float32), "b": np.ones(3, np.float64)}
    out = add_gaussian_noise(big, sigma=0.5, rng=np.random.default_rng(0))
    assert out["w"].dtype == np.float32 and out["b"].dtype == np.float64
    assert abs(float(out["w"].std()) - 0.5) < 0.005 and abs(float(out["w"].mean())) < 0.005
    assert not np.array_equal(out["b"], big["b"])
    same = add_gaussian_noise(big, sigma=0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(same["w"], big["w"])


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf")])
def test_gaussian_noise_refuses_bad_sigma(sigma: float) -> None:
    with pytest.raises(ValueError, match="sigma must be a finite number"):
        add_gaussian_noise(LOCAL, sigma=sigma, rng=np.random.default_rng(0))


def test_update_deltas() -> None:
    deltas = update_deltas({**LOCAL, "extra": np.zeros(1)}, GLOBAL)
    assert deltas["net.weight"] == 2.0 and deltas["net.bias"] == 2.5 and np.isnan(deltas["extra"])
