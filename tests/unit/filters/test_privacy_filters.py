"""Site privacy filters on real FLARE shareables: models changed, statistics and metrics untouched.

``DPUpdate`` (the strict scope's DP release) has its own file, ``test_dp_update.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.filter import FilterChainType, FilterContextKey
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext

from fedhealth.constants import META_PRIVACY
from fedhealth.filters.dp_update import DPUpdate
from fedhealth.filters.exclude_layers import ExcludeLayers

GLOBAL = {"net.weight": np.zeros((1, 3), np.float32), "net.bias": np.array([0.25], np.float32)}
LOCAL = {"net.weight": np.ones((1, 3), np.float32), "net.bias": np.array([9.0], np.float32)}
# Results a scope filter must let pass unchanged: fed_stats (a collection of plain values), metrics.
PASS_THROUGH = [
    DXO(DataKind.COLLECTION, data={"count": 3, "sum": [1.0, 2.0]}),
    DXO(DataKind.METRICS, data={"auc": 0.8}),
]


def _chain(filter_, chain: str):
    filter_.set_prop(FilterContextKey.CHAIN_TYPE, chain)
    return filter_


def test_exclude_layers_sends_back_the_received_global_values() -> None:
    ctx = FLContext()
    data_side = _chain(ExcludeLayers(layers=["net.bias"]), FilterChainType.TASK_DATA_CHAIN)
    result_side = _chain(ExcludeLayers(layers=["net.bias"]), FilterChainType.TASK_RESULT_CHAIN)
    incoming = DXO(DataKind.WEIGHTS, data=dict(GLOBAL)).to_shareable()
    assert data_side.process(incoming, ctx) is incoming  # the task data itself is not changed
    out = from_shareable(result_side.process(DXO(DataKind.WEIGHTS, data=dict(LOCAL)).to_shareable(), ctx))
    np.testing.assert_array_equal(out.data["net.bias"], [0.25])
    np.testing.assert_array_equal(out.data["net.weight"], LOCAL["net.weight"])
    assert out.get_meta_prop(META_PRIVACY) == [{"filter": "ExcludeLayers", "layers": ["net.bias"]}]


def test_exclude_layers_zeroes_differences() -> None:
    side = _chain(ExcludeLayers(layers=["net.bias"]), FilterChainType.TASK_RESULT_CHAIN)
    out = from_shareable(
        side.process(DXO(DataKind.WEIGHT_DIFF, data=dict(LOCAL)).to_shareable(), FLContext())
    )
    np.testing.assert_array_equal(out.data["net.bias"], [0.0])


@pytest.mark.parametrize("dxo", PASS_THROUGH)
@pytest.mark.parametrize(
    "make",
    [
        lambda: DPUpdate(clip_norm=1.0, noise_multiplier=1.0, delta=1e-5),
        lambda: ExcludeLayers(layers=["net.bias"]),
    ],
)
def test_scope_filters_pass_statistics_and_metrics(dxo: DXO, make) -> None:
    shareable = dxo.to_shareable()
    out = from_shareable(_chain(make(), FilterChainType.TASK_RESULT_CHAIN).process(shareable, FLContext()))
    assert out.data == dxo.data and out.data_kind == dxo.data_kind


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ExcludeLayers(layers=[]), "non-empty list"),
    ],
)
def test_filters_refuse_bad_args(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_exclude_layers_refuses_to_send_weights_without_a_received_model() -> None:
    ctx = FLContext()
    ctx.set_prop(ReservedKey.RUN_NUM, "job-without-model", private=False, sticky=False)
    side = _chain(ExcludeLayers(layers=["net.bias"]), FilterChainType.TASK_RESULT_CHAIN)
    with pytest.raises(ValueError, match="refusing to send local weights"):
        side.process(DXO(DataKind.WEIGHTS, data=dict(LOCAL)).to_shareable(), ctx)


def test_exclude_layers_does_not_remember_ciphertexts() -> None:
    ctx = FLContext()
    ctx.set_prop(ReservedKey.RUN_NUM, "he-job", private=False, sticky=False)
    data_side = _chain(ExcludeLayers(layers=["net.bias"]), FilterChainType.TASK_DATA_CHAIN)
    encrypted = {"net.weight": b"ckks...", "net.bias": b"ckks..."}
    data_side.process(DXO(DataKind.WEIGHTS, data=encrypted).to_shareable(), ctx)
    result_side = _chain(ExcludeLayers(layers=["net.bias"]), FilterChainType.TASK_RESULT_CHAIN)
    with pytest.raises(ValueError, match="refusing to send local weights"):
        result_side.process(DXO(DataKind.WEIGHTS, data=dict(LOCAL)).to_shareable(), ctx)
