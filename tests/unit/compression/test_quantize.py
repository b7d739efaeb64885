"""Blockwise quantization stays within half a block's scale; fp16 within its rounding."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.compression.quantize import (
    dequantize_blockwise,
    quantize_blockwise,
    to_fp16,
)

# bits, block size, n values, scale of the data
CASES = [
    (8, 512, 10_000, 1.0),
    (8, 64, 1_001, 1e-3),
    (4, 512, 10_000, 1.0),
    (4, 32, 77, 50.0),
    (8, 512, 3, 1.0),  # fewer values than a block
    (4, 16, 1, 1.0),  # a single value (odd count, 4-bit packing)
]


@pytest.mark.parametrize(("bits", "block", "n", "scale"), CASES)
def test_error_within_half_a_block_scale(bits, block, n, scale):
    x = np.random.default_rng(n).normal(0, scale, n).astype(np.float32)
    codes, offsets, scales = quantize_blockwise(x, bits=bits, block_size=block)
    y = dequantize_blockwise(codes, offsets, scales, bits=bits, block_size=block, size=n)
    n_blocks = -(-n // block)
    assert offsets.shape == scales.shape == (n_blocks,)
    assert codes.dtype == np.uint8 and codes.size == (n if bits == 8 else (n + 1) // 2)
    # Per block: at most half that block's scale (plus float32 rounding of offset and scale).
    per_value_scale = scales[np.arange(n) // block].astype(np.float64)
    assert np.all(np.abs(y - x) <= per_value_scale / 2 + 1e-6 * np.abs(x) + 1e-12)
    assert np.max(np.abs(y - x)) <= float(np.max(scales)) / 2 * (1 + 1e-6) + 1e-12
    # The bound is meaningful: the scale is range / (2**bits - 1).
    ranges = np.ptp(np.pad(x, (0, n_blocks * block - n), mode="edge").reshape(n_blocks, block), axis=1)
    np.testing.assert_allclose(scales, ranges / (2**bits - 1), rtol=1e-6)


def test_constant_block_is_exact_and_extremes_are_kept():
    x = np.array([3.5] * 20 + [-1.0, 2.0] + [0.25] * 10, dtype=np.float32)
    codes, offsets, scales = quantize_blockwise(x, bits=4, block_size=20)
    y = dequantize_blockwise(codes, offsets, scales, bits=4, block_size=20, size=x.size)
    np.testing.assert_array_equal(y[:20], 3.5)  # scale 0: exact
    assert y[20] == pytest.approx(-1.0, abs=1e-7) and y[21] == pytest.approx(2.0, abs=1e-6)


def test_fp16_rounding_and_clipping():
    x = np.array([1.0, 1e-3, 70000.0, -1e6], dtype=np.float64)
    y = to_fp16(x)
    assert y.dtype == np.float16
    assert y[0] == 1.0 and abs(float(y[1]) - 1e-3) <= 1e-3 * 2**-11
    assert float(y[2]) == 65504.0 and float(y[3]) == -65504.0


@pytest.mark.parametrize(("bits", "block"), [(3, 64), (8, 1)])
def test_bad_settings_are_refused(bits, block):
    with pytest.raises(ValueError, match="must be"):
        quantize_blockwise(np.zeros(4), bits=bits, block_size=block)
