"""The fixed-point ring encoding: scales, round trips, no wraparound at the bounds, and its refusals.

(Named ``test_secagg_encoding`` because ``tests/unit/ehr/test_encoding.py`` holds the other module name.)
"""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.secagg.encoding import FixedPoint, flatten, unflatten

FP = {"max_norm": 10.0, "max_sites": 16, "max_weight": 1000.0}
# (settings that differ from FP, the refusal's message)
BAD = [
    ({"bits": 16}, r"bits must be one of \(32, 40, 48, 56, 64\), got 16"),
    ({"bits": 44}, r"bits must be one of \(32, 40, 48, 56, 64\), got 44"),
    ({"max_norm": 0.0}, "max_norm must be a positive finite number, got 0.0"),
    ({"max_norm": -1.0}, "max_norm must be a positive finite number"),
    ({"max_norm": float("inf")}, "max_norm must be a positive finite number"),
    ({"max_norm": float("nan")}, "max_norm must be a positive finite number"),
    ({"max_sites": 0}, "max_sites must be at least 1 and max_weight positive, got 0"),
    ({"max_weight": 0.0}, "max_sites must be at least 1 and max_weight positive"),
    ({"max_weight": float("inf")}, "max_sites must be at least 1 and max_weight positive"),
]
# (weight, the ratio, or None where it is refused)
WEIGHTS = [
    (1000.0, 1.0),
    (250.0, 0.25),
    (1e-3, 1e-6),
    (1000.0001, None),
    (0.0, None),
    (-5.0, None),
    (float("nan"), None),
    (float("inf"), None),
]


def _fp(bits: int = 32, **changes) -> FixedPoint:
    return FixedPoint(bits=bits, **{**FP, **changes})


@pytest.mark.parametrize(("changes", "message"), BAD)
def test_settings_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _fp(**changes)


@pytest.mark.parametrize(("bits", "dtype"), [(32, np.uint32), (64, np.uint64)])
def test_scales(bits: int, dtype: type) -> None:
    fp = _fp(bits)
    assert fp.dtype is dtype
    assert fp.scale == 2.0 ** (bits - 2) / (16 * 10.0)
    assert fp.weight_scale == 2.0 ** (bits - 2) / 16
    assert fp.max_error(4) == pytest.approx(4 * 0.5 * 160 / 2.0 ** (bits - 2), rel=1e-12)


@pytest.mark.parametrize(("weight", "ratio"), WEIGHTS)
def test_ratio(weight: float, ratio: float | None) -> None:
    fp = _fp()
    if ratio is None:
        with pytest.raises(ValueError, match=r"outside \(0, max_weight=1000\]; raise max_weight"):
            fp.ratio(weight)
    else:
        assert fp.ratio(weight) == pytest.approx(ratio, rel=1e-15)


@pytest.mark.parametrize("bits", [32, 64])
def test_encode_layout_and_round_trip(bits: int) -> None:
    fp = _fp(bits)
    x = np.random.default_rng(1).uniform(-10.0, 10.0, size=1000)
    ring = fp.encode(x, weight=400.0)
    assert ring.dtype == fp.dtype and ring.shape == (1001,)
    assert int(ring[-1]) == round(0.4 * fp.weight_scale)
    values, ratio = fp.decode(ring)
    assert np.max(np.abs(values - 0.4 * x)) <= fp.max_error(1) + 1e-15 * 10
    assert abs(ratio - 0.4) <= 0.5 / fp.weight_scale


def test_encode_rounds_to_the_nearest_integer() -> None:
    fp = _fp(32)
    step = 1.0 / fp.scale
    values, _ = fp.decode(fp.encode(np.array([0.3 * step, 0.7 * step, -0.7 * step]), weight=1000.0))
    assert values == pytest.approx([0.0, step, -step], abs=1e-15)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("sites", [1, 5, 16])
def test_sum_of_encodings_within_max_error(bits: int, sites: int) -> None:
    fp = _fp(bits)
    rng = np.random.default_rng(sites)
    xs = rng.uniform(-10.0, 10.0, size=(sites, 500))
    ws = rng.uniform(1.0, 1000.0, size=sites)
    total = sum(fp.encode(x, weight=w) for x, w in zip(xs, ws, strict=True))
    values, ratio = fp.decode(total)
    assert np.max(np.abs(values - (ws[:, None] / 1000.0 * xs).sum(0))) <= fp.max_error(sites) + 1e-14 * sites
    # 64 bits: the ring is finer than float64, whose rounding (1e-16 relative) then dominates
    assert abs(ratio - ws.sum() / 1000.0) <= sites * 0.5 / fp.weight_scale + 1e-15 * sites


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_no_wraparound_at_the_bounds(bits: int, sign: float) -> None:
    """``max_sites`` sites, each at ``±max_norm`` with the largest weight, still decode exactly."""
    fp = _fp(bits)
    x = np.zeros(3)
    x[0], x[2] = sign * 10.0, -sign * 10.0
    total = sum(fp.encode(x, weight=1000.0) for _ in range(16))
    values, ratio = fp.decode(total)
    assert values == pytest.approx([sign * 160.0, 0.0, -sign * 160.0], abs=fp.max_error(16))
    assert ratio == pytest.approx(16.0, abs=16 / fp.weight_scale)
    # the sum is a quarter of the ring: three times as many sites would pass half of it and wrap around
    signed = total.view(np.int32 if bits == 32 else np.int64)
    assert abs(int(signed[0])) == 2 ** (bits - 2)
    wrapped, _ = fp.decode(total + total + total)
    assert wrapped[0] == pytest.approx(-sign * 160.0, abs=3 * fp.max_error(16))


@pytest.mark.parametrize("bits", [32, 64])
def test_encode_refuses_an_unclipped_coordinate(bits: int) -> None:
    fp = _fp(bits)
    fp.encode(np.array([10.0, -10.0]), weight=1.0)  # exactly at the bound: accepted
    with pytest.raises(ValueError, match=r"above max_norm: clip the update \(guard_update\) first"):
        fp.encode(np.array([0.0, -10.001]), weight=1.0)


def test_encode_refuses_a_weight_above_max_weight() -> None:
    with pytest.raises(ValueError, match="FedAvg weight 1500.0 is outside"):
        _fp().encode(np.zeros(3), weight=1500.0)


def test_flatten_and_unflatten_round_trip() -> None:
    update = {"w": np.arange(6.0).reshape(2, 3), "b": np.array([7.0, 8.0]), "s": np.array(9.0)}
    names = ["w", "b", "s"]
    vector = flatten(update, names)
    assert vector.tolist() == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    back = unflatten(vector, {n: update[n].shape for n in names})
    assert all(np.array_equal(back[n], update[n]) for n in names)
    assert flatten({}, []).shape == (0,)


@pytest.mark.parametrize(
    ("update", "names"),
    [({"w": np.zeros(2)}, ["w", "b"]), ({"w": np.zeros(2), "b": np.zeros(1)}, ["w"])],
)
def test_flatten_refuses_other_layers(update: dict, names: list[str]) -> None:
    with pytest.raises(ValueError, match="the update's layers .* differ from the global model's"):
        flatten(update, names)


def test_unflatten_refuses_another_size() -> None:
    with pytest.raises(ValueError, match="the vector has 5 values, the layers 4"):
        unflatten(np.zeros(5), {"w": (2, 2)})


# A ring of whole bytes narrower than the machine word: computed modulo 2^64, reduced, sent packed.
PACKED = [40, 48, 56]


@pytest.mark.parametrize("bits", [32, *PACKED, 64])
def test_the_wire_holds_bits_over_8_bytes_a_value_and_round_trips(bits: int) -> None:
    fp = FixedPoint(bits=bits, max_norm=1.0, max_sites=4, max_weight=100.0)
    values = fp.encode(np.linspace(-1.0, 1.0, 101), weight=50.0)
    wire = fp.to_wire(values)
    assert wire.dtype == np.uint8 and wire.shape == (102 * bits // 8,)
    np.testing.assert_array_equal(fp.from_wire(wire, size=102), values)
    with pytest.raises(ValueError, match=rf"expected uint8 \({101 * bits // 8},\)"):
        fp.from_wire(wire[: 101 * bits // 8 + 1], size=101)


@pytest.mark.parametrize("bits", PACKED)
def test_a_packed_ring_sums_masked_values_exactly(bits: int) -> None:
    """Masks drawn over the whole machine word cancel modulo 2^bits: the sum decodes to the plain sum."""
    fp = FixedPoint(bits=bits, max_norm=1.0, max_sites=3, max_weight=10.0)
    rng = np.random.default_rng(bits)
    xs = [rng.uniform(-1, 1, size=50) for _ in range(3)]
    masks = [rng.integers(0, 2**63, size=51, dtype=np.uint64) * np.uint64(2) for _ in range(3)]
    masked = [fp.reduce(fp.encode(x, weight=10.0) + m) for x, m in zip(xs, masks, strict=True)]
    assert all(int(v.max()) < 2**bits for v in masked)  # what leaves fits the ring
    total = masked[0] + masked[1] + masked[2] - masks[0] - masks[1] - masks[2]
    values, weight = fp.decode(total)
    np.testing.assert_allclose(values, sum(xs), atol=fp.max_error(3))
    assert weight == pytest.approx(3.0, abs=3 / fp.weight_scale)


@pytest.mark.parametrize("bits", [32, 40, 48, 56, 64])
def test_each_extra_byte_rounds_256_times_finer(bits: int) -> None:
    fp = FixedPoint(bits=bits, max_norm=1.0, max_sites=16, max_weight=1.0)
    assert fp.max_error(16) == pytest.approx(16 * 0.5 * 16 / 2 ** (bits - 2))  # 2^-26 at 32 bits
    assert fp.max_error(16) == pytest.approx(
        FixedPoint(32, 1.0, 16, 1.0).max_error(16) / 256 ** ((bits - 32) // 8)
    )
