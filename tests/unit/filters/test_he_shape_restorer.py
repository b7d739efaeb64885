"""HEShapeRestorer: flat decrypted tensors get the model's shapes back, or a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_context import FLContext

from fedhealth import constants as C
from fedhealth.filters.he_shape_restorer import HEShapeRestorer, restore_shapes

# (flat weights, shapes, expected shapes)
CASES = [
    (
        {"net.weight": list(range(14)), "net.bias": [0.5]},
        {"net.weight": [1, 14], "net.bias": [1]},
        {"net.weight": (1, 14), "net.bias": (1,)},
    ),
    ({"w": np.arange(6.0)}, {"w": [2, 3]}, {"w": (2, 3)}),
    ({"w": np.arange(6.0), "extra": [1.0, 2.0]}, {"w": [3, 2]}, {"w": (3, 2), "extra": (2,)}),
]


@pytest.mark.parametrize(("weights", "shapes", "expected"), CASES)
def test_restore_shapes(weights: dict, shapes: dict, expected: dict) -> None:
    out = restore_shapes(weights, shapes)
    assert {k: v.shape for k, v in out.items()} == expected
    assert all(v.dtype == np.float32 for v in out.values())
    np.testing.assert_array_equal(
        out[next(iter(weights))].ravel(), np.asarray(weights[next(iter(weights))], np.float32)
    )


def test_wrong_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"'w' has 5 values but the model's shape is \[2, 3\]"):
        restore_shapes({"w": np.arange(5.0)}, {"w": [2, 3]})


def test_filter_uses_meta_shapes_then_remembers_them() -> None:
    restorer = HEShapeRestorer()
    first = DXO(DataKind.WEIGHTS, data={"w": list(range(6))}, meta={C.META_MODEL_SHAPES: {"w": [2, 3]}})
    out = from_shareable(restorer.process(first.to_shareable(), FLContext()))
    assert out.data["w"].shape == (2, 3)
    later = DXO(DataKind.WEIGHTS, data={"w": list(range(6))})  # e.g. the evaluation task's model
    assert from_shareable(restorer.process(later.to_shareable(), FLContext())).data["w"].shape == (2, 3)
