"""ScheduledShareableGenerator: each outgoing model carries lr * gamma ** round in its DXO meta."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DataKind, from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import make_model_learnable
from nvflare.app_common.app_constant import AppConstants

from fedhealth.constants import META_LEARNING_RATE, META_ROUND
from fedhealth.shareables.scheduled_generator import ScheduledShareableGenerator

# (lr, gamma, current round or None for unset, expected learning rate, expected round)
SCHEDULE = [
    (0.01, 0.95, 0, 0.01, 0),
    (0.01, 0.95, 3, 0.01 * 0.95**3, 3),
    (0.1, 0.5, 4, 0.1 * 0.5**4, 4),
    (0.2, 1.0, 7, 0.2, 7),
    (0.3, 0.9, None, 0.3, 0),
]
# (lr, gamma, message)
BAD_ARGS = [
    (0.0, 0.9, "lr must be positive, got 0.0"),
    (-0.1, 0.9, "lr must be positive"),
    (0.1, 1.01, r"gamma must be in \(0, 1\], got 1.01"),
    (0.1, 0.0, "gamma must be in"),
    (0.1, -0.5, "gamma must be in"),
]


@pytest.mark.parametrize(("lr", "gamma", "current_round", "expected_lr", "expected_round"), SCHEDULE)
def test_learning_rate_in_dxo_meta(
    lr: float, gamma: float, current_round: int | None, expected_lr: float, expected_round: int
) -> None:
    weights = {"net.weight": np.arange(14, dtype="float32").reshape(1, 14), "net.bias": np.ones(1, "float32")}
    fl_ctx = FLContext()
    if current_round is not None:
        fl_ctx.set_prop(AppConstants.CURRENT_ROUND, current_round)
    generator = ScheduledShareableGenerator(lr=lr, gamma=gamma)
    shareable = generator.learnable_to_shareable(make_model_learnable(weights, {}), fl_ctx)
    dxo = from_shareable(shareable)
    assert dxo.data_kind == DataKind.WEIGHTS
    assert dxo.get_meta_prop(META_LEARNING_RATE) == pytest.approx(expected_lr, rel=1e-12)
    assert dxo.get_meta_prop(META_ROUND) == expected_round
    assert set(dxo.data) == set(weights)
    for key, value in weights.items():
        np.testing.assert_array_equal(dxo.data[key], value)


@pytest.mark.parametrize(("lr", "gamma", "message"), BAD_ARGS)
def test_rejects_bad_schedule(lr: float, gamma: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScheduledShareableGenerator(lr=lr, gamma=gamma)
