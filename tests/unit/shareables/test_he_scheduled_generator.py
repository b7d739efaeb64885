"""HEScheduledShareableGenerator: learning rate, round and tensor shapes in every outgoing model."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import make_model_learnable
from nvflare.app_common.app_constant import AppConstants

from fedhealth.constants import META_LEARNING_RATE, META_MODEL_SHAPES, META_ROUND
from fedhealth.shareables.he_scheduled_generator import HEScheduledShareableGenerator

# (lr, gamma, round, expected learning rate)
SCHEDULE = [(0.03, 1.0, 0, 0.03), (0.1, 0.5, 3, 0.1 * 0.5**3)]
BAD_ARGS = [(0.0, 1.0, "lr must be positive"), (0.1, 1.5, r"gamma must be in \(0, 1\]")]


@pytest.mark.parametrize(("lr", "gamma", "current_round", "expected"), SCHEDULE)
def test_meta_of_the_outgoing_model(lr: float, gamma: float, current_round: int, expected: float) -> None:
    weights = {"net.weight": np.zeros((1, 14), np.float32), "net.bias": np.zeros(1, np.float32)}
    fl_ctx = FLContext()
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, current_round)
    generator = HEScheduledShareableGenerator(lr=lr, gamma=gamma)
    dxo = from_shareable(generator.learnable_to_shareable(make_model_learnable(weights, {}), fl_ctx))
    assert dxo.get_meta_prop(META_LEARNING_RATE) == pytest.approx(expected)
    assert dxo.get_meta_prop(META_ROUND) == current_round
    assert dxo.get_meta_prop(META_MODEL_SHAPES) == {"net.weight": [1, 14], "net.bias": [1]}
    # Later (flat, encrypted) models keep the shapes learned from the clear initial model.
    flat = {"net.weight": np.zeros(14, np.float32), "net.bias": np.zeros(1, np.float32)}
    later = from_shareable(generator.learnable_to_shareable(make_model_learnable(flat, {}), fl_ctx))
    assert later.get_meta_prop(META_MODEL_SHAPES) == {"net.weight": [1, 14], "net.bias": [1]}


@pytest.mark.parametrize(("lr", "gamma", "message"), BAD_ARGS)
def test_bad_args(lr: float, gamma: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HEScheduledShareableGenerator(lr=lr, gamma=gamma)
