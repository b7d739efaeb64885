"""Moving model weights between torch modules and FLARE's numpy dictionaries."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from fedhealth.models.tabular import TabularNet


def to_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's state as float32 numpy arrays (what travels in a DXO)."""
    return {k: v.detach().cpu().numpy().astype("float32") for k, v in model.state_dict().items()}


def to_tensors(weights: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Numpy arrays or tensors to float32 tensors."""
    return {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in weights.items()}


def tabular_from_weights(weights: Mapping[str, object]) -> TabularNet:
    """Rebuild a :class:`TabularNet` from its weights alone (architecture read from shapes).

    Raises:
        ValueError: when the names or shapes are not those of a TabularNet.
    """
    tensors = to_tensors(weights)
    if set(tensors) == {"net.weight", "net.bias"}:
        model = TabularNet(in_features=tensors["net.weight"].shape[1], arch="logreg", seed=None)
    elif {"net.0.weight", "net.3.weight"} <= set(tensors):
        hidden, in_features = tensors["net.0.weight"].shape
        model = TabularNet(in_features=in_features, arch="mlp", hidden=hidden, seed=None)
    else:
        raise ValueError(f"The received weights are not a fedhealth TabularNet (names: {sorted(tensors)}).")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:  # right names, wrong shapes or missing entries
        raise ValueError(f"The received weights do not fit a fedhealth TabularNet: {exc}") from exc
    return model
