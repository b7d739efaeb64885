"""Privacy-scope math: excluded layers carry no local information; noise has the asked spread; the DP
release clips to its norm, leaves pinned layers alone and is accounted as Opacus accounts."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.policy.update_rules import (
    add_gaussian_noise,
    dp_release,
    exclude_layers,
    l2_norm,
    noise_std,
    release_epsilon,
    update_deltas,
)

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


# (update, clip, fixed layers, expected norm of the moving layers with negligible noise)
RELEASE_CASES = [
    ({"w": np.full(4, 3.0), "b": np.array([4.0])}, 1.0, (), 1.0),
    ({"w": np.full(4, 3.0), "b": np.array([0.0])}, 1.0, ("b",), 1.0),  # the bias pinned at zero
    ({"w": np.full(4, 0.1), "b": np.array([0.0])}, 1.0, (), 0.2),  # under the clip: unchanged
]
BAD_RELEASE = [
    ({"w": np.ones(2)}, 0.0, 1.0, (), "positive finite"),
    ({"w": np.ones(2)}, 1.0, float("nan"), (), "positive finite"),
    ({"w": np.ones(2), "b": np.ones(1)}, 1.0, 1.0, ("b",), "'b' is to be released unchanged"),
]


@pytest.mark.parametrize(("update", "clip", "fixed", "norm"), RELEASE_CASES)
def test_dp_release_clips_the_moving_layers(update: dict, clip: float, fixed: tuple, norm: float) -> None:
    out = dp_release(
        update, clip_norm=clip, noise_multiplier=1e-12, rng=np.random.default_rng(0), fixed=fixed
    )
    assert l2_norm(out, skip=fixed) == pytest.approx(norm, rel=1e-9)
    for name in fixed:
        np.testing.assert_array_equal(out[name], update[name])
    assert {k: v.dtype for k, v in out.items()} == {k: v.dtype for k, v in update.items()}


@pytest.mark.parametrize(("update", "clip", "z", "fixed", "message"), BAD_RELEASE)
def test_dp_release_refuses(update: dict, clip: float, z: float, fixed: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dp_release(update, clip_norm=clip, noise_multiplier=z, rng=np.random.default_rng(0), fixed=fixed)


def test_noise_std_is_z_times_the_sensitivity_two_c() -> None:
    assert noise_std(clip_norm=0.5, noise_multiplier=3.0) == 3.0
    out = dp_release(
        {"w": np.zeros(400_000)}, clip_norm=0.5, noise_multiplier=3.0, rng=np.random.default_rng(1)
    )
    assert float(out["w"].std()) == pytest.approx(3.0, rel=0.005)


def test_release_epsilon_composes_mixed_multipliers() -> None:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for z in (1.0, 2.0, 1.0):
        accountant.step(noise_multiplier=z, sample_rate=1.0)
    assert release_epsilon([1.0, 2.0, 1.0], delta=1e-5) == pytest.approx(
        accountant.get_epsilon(1e-5), rel=1e-9
    )
    assert release_epsilon([], delta=1e-5) == 0.0
    with pytest.raises(ValueError, match="delta must be in"):
        release_epsilon([1.0], delta=0.0)
