"""The fault-drill filter corrupts exactly as configured (and only a copy)."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_context import FLContext

from fedhealth_tools.poc.fault_injector import FaultInjector, corrupt

WEIGHTS = {"net.weight": np.arange(6, dtype=np.float32).reshape(1, 6), "net.bias": np.ones(1, np.float32)}


def test_nan_mode_poisons_one_value_of_a_copy() -> None:
    out = corrupt(WEIGHTS, mode="nan")
    assert np.isnan(out["net.weight"]).sum() == 1 and np.isfinite(out["net.bias"]).all()
    assert np.isfinite(WEIGHTS["net.weight"]).all()  # the original is untouched


def test_scale_mode_multiplies_every_weight() -> None:
    out = corrupt(WEIGHTS, mode="scale", factor=100.0)
    np.testing.assert_array_equal(out["net.weight"], WEIGHTS["net.weight"] * 100)
    np.testing.assert_array_equal(out["net.bias"], [100.0])


def test_filter_applies_to_a_weights_shareable() -> None:
    shareable = DXO(DataKind.WEIGHTS, data=dict(WEIGHTS)).to_shareable()
    filtered = FaultInjector(mode="scale", factor=2.0).process(shareable, FLContext())
    np.testing.assert_array_equal(from_shareable(filtered).data["net.bias"], [2.0])


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        FaultInjector(mode="flip")
