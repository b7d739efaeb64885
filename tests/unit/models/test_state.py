"""Weights between torch modules and FLARE's numpy dictionaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedhealth.models.state import tabular_from_weights, to_numpy, to_tensors
from fedhealth.models.tabular import TabularNet

# (arch, in_features, hidden)
REBUILD_CASES = [("logreg", 13, 16), ("logreg", 14, 16), ("mlp", 14, 5), ("mlp", 13, 32)]
# Weight dictionaries that are not a TabularNet by name.
FOREIGN = [
    {"fc.weight": np.zeros((1, 13)), "fc.bias": np.zeros(1)},
    {"net.weight": np.zeros((1, 13))},
    {},
]
# Right names, wrong shapes or extra/missing keys: the docstring promises ValueError.
MALFORMED = [
    {"net.weight": np.zeros((2, 13)), "net.bias": np.zeros(2)},
    {"net.0.weight": np.zeros((4, 13)), "net.3.weight": np.zeros((1, 4))},
]


@pytest.mark.parametrize(("arch", "in_features", "hidden"), REBUILD_CASES)
def test_rebuild_from_weights_gives_identical_outputs(arch: str, in_features: int, hidden: int) -> None:
    original = TabularNet(in_features=in_features, arch=arch, hidden=hidden, seed=11).eval()
    weights = to_numpy(original)
    assert all(v.dtype == np.float32 and isinstance(v, np.ndarray) for v in weights.values())
    rebuilt = tabular_from_weights(weights).eval()
    assert (rebuilt.arch, rebuilt.in_features) == (arch, in_features)
    if arch == "mlp":
        assert rebuilt.hidden == hidden
    x = torch.randn(6, in_features)
    assert torch.equal(rebuilt(x), original(x))


def test_to_tensors_accepts_lists_and_tensors() -> None:
    out = to_tensors({"a": [1, 2], "b": torch.tensor([3.0], dtype=torch.float64)})
    assert out["a"].dtype == torch.float32 and out["b"].dtype == torch.float32
    assert out["a"].tolist() == [1.0, 2.0] and out["b"].tolist() == [3.0]


@pytest.mark.parametrize("weights", FOREIGN)
def test_rejects_foreign_names(weights: dict) -> None:
    with pytest.raises(ValueError, match="not a fedhealth TabularNet"):
        tabular_from_weights(weights)


@pytest.mark.parametrize("weights", MALFORMED)
def test_rejects_malformed_weights_with_value_error(weights: dict) -> None:
    with pytest.raises(ValueError, match="TabularNet"):
        tabular_from_weights(weights)
