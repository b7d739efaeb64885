"""Top-k keeps the largest entries; the gap code round-trips, fillers included."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.compression.topk import (
    MAX_GAP,
    decode_indices,
    densify,
    encode_indices,
    topk_count,
    topk_indices,
)

COUNT_CASES = [(1000, 0.01, 10), (1000, 0.001, 1), (15, 0.01, 1), (15, 1.0, 15), (7, 0.5, 4), (0, 0.1, 0)]


@pytest.mark.parametrize(("size", "fraction", "expected"), COUNT_CASES)
def test_topk_count(size, fraction, expected):
    assert topk_count(size, fraction) == expected


def test_topk_indices_are_the_largest_magnitudes_sorted():
    x = np.array([0.1, -5.0, 0.2, 3.0, -0.3, 4.0])
    np.testing.assert_array_equal(topk_indices(x, 3), [1, 3, 5])
    np.testing.assert_array_equal(topk_indices(x, 10), np.arange(6))


@pytest.mark.parametrize(
    "indices",
    [
        [0, 1, 2],
        [5, 70_000],  # one wide gap: one filler
        [200_000],  # first index beyond a gap: fillers from 0
        [3, 3 + MAX_GAP, 3 + 3 * MAX_GAP + 1],  # exactly MAX_GAP, then a gap needing two fillers
    ],
)
def test_gap_code_round_trips(indices):
    idx = np.array(indices)
    values = np.arange(1, idx.size + 1, dtype=np.float16)
    gaps, vals = encode_indices(idx, values)
    assert gaps.dtype == np.uint16
    decoded = decode_indices(gaps)
    real = vals != 0
    np.testing.assert_array_equal(decoded[real], idx)
    np.testing.assert_array_equal(vals[real], values)
    dense = densify(gaps, vals, int(idx.max()) + 1)
    assert np.count_nonzero(dense) == idx.size and dense[idx].tolist() == values.astype(float).tolist()
