"""FedOptShareableGenerator: the server step on the aggregated update; FedAvg as the special case."""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnableKey, make_model_learnable
from nvflare.app_common.app_constant import AppConstants

from fedhealth.algorithms.fedopt import ServerOptimizer
from fedhealth.constants import META_LEARNING_RATE
from fedhealth.shareables.fedopt_generator import FedOptShareableGenerator

START = {"net.weight": np.arange(14, dtype="float32").reshape(1, 14) / 10, "net.bias": np.ones(1, "float32")}
AVERAGED = {k: v + 0.5 for k, v in START.items()}
# (server optimizer, server lr, data kind the aggregator returns)
CASES = [
    ("yogi", 0.1, DataKind.WEIGHTS),
    ("adam", 0.3, DataKind.WEIGHT_DIFF),
    ("adagrad", 0.05, DataKind.WEIGHTS),
]


def _step(generator: FedOptShareableGenerator, kind: str) -> dict:
    fl_ctx = FLContext()
    fl_ctx.set_prop(
        AppConstants.GLOBAL_MODEL, make_model_learnable({k: v.copy() for k, v in START.items()}, {})
    )
    data = AVERAGED if kind == DataKind.WEIGHTS else {k: AVERAGED[k] - START[k] for k in START}
    learnable = generator.shareable_to_learnable(DXO(kind, data=data).to_shareable(), fl_ctx)
    return learnable[ModelLearnableKey.WEIGHTS]


@pytest.mark.parametrize("kind", [DataKind.WEIGHTS, DataKind.WEIGHT_DIFF])
def test_sgd_with_server_lr_one_gives_the_aggregated_model(kind):
    out = _step(FedOptShareableGenerator(lr=0.03, server_opt="sgd", server_lr=1.0, beta1=0.0), kind)
    for k in START:
        np.testing.assert_allclose(out[k], AVERAGED[k], atol=1e-6)
        assert out[k].dtype == np.float32 and out[k].shape == START[k].shape


@pytest.mark.parametrize(("opt", "server_lr", "kind"), CASES)
def test_adaptive_step_matches_the_core(opt, server_lr, kind):
    generator = FedOptShareableGenerator(lr=0.03, server_opt=opt, server_lr=server_lr)
    first, second = _step(generator, kind), _step(generator, kind)  # state carries over rounds
    core = ServerOptimizer(kind=opt, lr=server_lr)
    delta = {k: (AVERAGED[k] - START[k]).astype("float64") for k in START}
    want_first = core.step(START, delta)
    want_second = core.step(START, delta)
    for k in START:
        np.testing.assert_allclose(first[k], want_first[k], rtol=1e-6)
        np.testing.assert_allclose(second[k], want_second[k], rtol=1e-6)
    assert not np.allclose(first["net.bias"], second["net.bias"])  # momentum moved the second step


def test_outgoing_task_still_carries_the_schedule():
    generator = FedOptShareableGenerator(lr=0.2, gamma=0.5)
    fl_ctx = FLContext()
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, 2)
    dxo = from_shareable(generator.learnable_to_shareable(make_model_learnable(START, {}), fl_ctx))
    assert dxo.get_meta_prop(META_LEARNING_RATE) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"server_opt": "lamb"}, "must be one of"), ({"server_lr": -1.0}, "must be positive")],
)
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FedOptShareableGenerator(lr=0.1, **kwargs)
