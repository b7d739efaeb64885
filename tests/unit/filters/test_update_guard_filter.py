"""UpdateGuard, the HE jobs' site-side check before encryption, on real FLARE shareables and filter chains.

NaN refused with the layer's name; the update clipped to exactly ``max_norm``; WEIGHTS sent as the
received global model plus the clipped update; no remembered global model refused; other tasks,
metrics and statistics untouched; and the shipped HE jobs' own filter chains (FLARE's HE decryptor
and encryptor with a provisioned kit's TenSEAL context) send an update whose decrypted norm is the
bound.
"""

from __future__ import annotations

import importlib
import json
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.filter import FilterChainType, FilterContextKey
from nvflare.apis.fl_constant import FLContextKey, ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_opt.he.homomorphic_encrypt import load_tenseal_context_from_workspace

from fedhealth import constants as C
from fedhealth.filters import update_guard
from fedhealth.filters.update_guard import UpdateGuard
from fedhealth.models.state import to_numpy
from fedhealth.models.tabular import TabularNet
from fedhealth_tools.he.pipeline import as_participant, he_fedavg_round, wire
from fedhealth_tools.poc.workspace import PocLayout

ROOT = Path(__file__).resolve().parents[3]
HE_JOBS = ("heart_he", "heart_he_dp", "cxr_he")
SHAPES = {"net.weight": (1, 14), "net.bias": (1,)}
# (update norm, max_norm, sent norm, clipped)
CLIP_CASES = [
    (100.0, 1.0, 1.0, True),
    (5.0, 0.5, 0.5, True),
    (0.25, 1.0, 0.25, False),
    (0.999, 1.0, 0.999, False),  # float32 rounding would make exactly 1.0 a hair above the bound
]
# (layers given a NaN or infinity, the listing the refusal names)
BAD_CASES = [
    ({"net.bias": np.nan}, "net.bias (1 values)"),
    ({"net.weight": np.inf}, "net.weight (1 values)"),
    ({"net.weight": np.nan, "net.bias": -np.inf}, "net.bias (1 values), net.weight (1 values)"),
]
BAD_BOUNDS = [0, -1.0, float("nan"), float("inf"), "1.0x", True]
# Results the guard must let pass untouched on the result chain.
PASS_THROUGH = [
    DXO(DataKind.COLLECTION, data={"count": 3, "sum": [1.0, 2.0]}),  # fed_stats
    DXO(DataKind.METRICS, data={"auc": 0.8}),
]


def _ctx(task: str | None = C.TASK_TRAIN, job_id: str | None = None) -> FLContext:
    """A job of its own (the filter keeps the received model per job) running ``task``."""
    ctx = FLContext()
    ctx.set_prop(ReservedKey.RUN_NUM, job_id or f"job-{uuid.uuid4().hex[:8]}", private=False, sticky=True)
    ctx.set_prop(ReservedKey.IDENTITY_NAME, "cleveland", private=False, sticky=True)
    if task is not None:
        ctx.set_prop(FLContextKey.TASK_NAME, task, private=True, sticky=False)
    ctx.set_peer_context(ctx)
    return ctx


def _side(filter_, chain: str):
    filter_.set_prop(FilterContextKey.CHAIN_TYPE, chain)
    return filter_


def _weights(seed: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (scale * rng.normal(size=s)).astype(np.float32) for k, s in SHAPES.items()}


def _with_norm(norm: float, seed: int = 1) -> dict[str, np.ndarray]:
    update = _weights(seed)
    return {k: (v * (norm / _norm(update))).astype(np.float32) for k, v in update.items()}


def _norm(update: dict) -> float:
    return float(np.sqrt(sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in update.values())))


def _receive(guard: UpdateGuard, weights: dict, ctx: FLContext) -> Shareable:
    task = DXO(DataKind.WEIGHTS, data=weights).to_shareable()
    task.set_header(AppConstants.CURRENT_ROUND, 3)
    return _side(guard, FilterChainType.TASK_DATA_CHAIN).process(task, ctx)


def _send(guard: UpdateGuard, data: dict, ctx: FLContext, kind: str = DataKind.WEIGHT_DIFF) -> DXO:
    result = DXO(kind, data=data, meta={MetaKey.NUM_STEPS_CURRENT_ROUND: 12}).to_shareable()
    result.set_header(AppConstants.CURRENT_ROUND, 3)
    return from_shareable(_side(guard, FilterChainType.TASK_RESULT_CHAIN).process(result, ctx))


@pytest.mark.parametrize(("norm", "bound", "sent", "clipped"), CLIP_CASES)
def test_a_difference_is_clipped_to_max_norm(norm: float, bound: float, sent: float, clipped: bool) -> None:
    update = _with_norm(norm)
    out = _send(UpdateGuard(max_norm=bound), update, _ctx())
    assert _norm(out.data) == pytest.approx(sent, rel=1e-6)
    for name, value in update.items():  # only scaled, in the layer's own dtype
        np.testing.assert_allclose(out.data[name], value * (sent / _norm(update)), rtol=1e-6)
        assert out.data[name].dtype == np.float32
    assert out.get_meta_prop(C.META_PRIVACY) == [
        {
            "filter": "UpdateGuard",
            "max_norm": bound,
            "clipped": clipped,
        }
    ]
    assert out.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND) == 12  # the encryptor's weight is kept


@pytest.mark.parametrize(("norm", "bound", "sent", "clipped"), CLIP_CASES)
def test_weights_go_back_as_the_received_model_plus_the_clipped_update(
    norm: float, bound: float, sent: float, clipped: bool
) -> None:
    ctx, received, update = _ctx(), _weights(seed=2), _with_norm(norm)
    _receive(UpdateGuard(max_norm=bound), received, ctx)
    local = {k: received[k] + update[k] for k in SHAPES}
    out = _send(UpdateGuard(max_norm=bound), dict(local), ctx, kind=DataKind.WEIGHTS)
    assert out.data_kind == DataKind.WEIGHTS
    moved = {k: out.data[k].astype(np.float64) - received[k] for k in SHAPES}
    assert _norm(moved) == pytest.approx(sent, rel=1e-5)
    if clipped:
        for name in SHAPES:
            np.testing.assert_allclose(moved[name], update[name] * (bound / _norm(update)), atol=1e-6)
    else:  # nothing clipped: the local weights leave exactly as trained
        for name in SHAPES:
            np.testing.assert_array_equal(out.data[name], local[name])
    assert all(out.data[k].dtype == np.float32 and out.data[k].shape == s for k, s in SHAPES.items())


@pytest.mark.parametrize(("bad", "listed"), BAD_CASES)
@pytest.mark.parametrize("kind", [DataKind.WEIGHTS, DataKind.WEIGHT_DIFF])
def test_nan_or_infinity_is_refused_naming_the_layers(bad: dict, listed: str, kind: str) -> None:
    ctx, received = _ctx(), _weights(seed=2)
    _receive(UpdateGuard(max_norm=1.0), received, ctx)
    local = {k: received[k] + 0.01 for k in SHAPES} if kind == DataKind.WEIGHTS else _with_norm(0.5)
    for name, value in bad.items():
        local[name].reshape(-1)[0] = value
    with pytest.raises(ValueError) as info:
        _send(UpdateGuard(max_norm=1.0), local, ctx, kind=kind)
    assert str(info.value).startswith(
        f"UpdateGuard: this site's train update of round 3 holds NaN or infinite values in {listed}; "
        "refused before it leaves the site"
    )


def test_weights_without_a_remembered_global_model_are_refused() -> None:
    with pytest.raises(ValueError, match="^UpdateGuard: no plaintext global model was received"):
        _send(UpdateGuard(max_norm=1.0), _weights(seed=3), _ctx(), kind=DataKind.WEIGHTS)


def test_only_the_train_task_plaintext_model_is_remembered() -> None:
    """A validate task's model is not the round's start; ciphertexts (the guard listed before the
    decryptor) make the guard forget the last round's model instead of using it."""
    job = f"job-{uuid.uuid4().hex[:8]}"
    guard = UpdateGuard(max_norm=1.0)
    _receive(guard, _weights(seed=4), _ctx(C.TASK_VALIDATE, job))
    assert job not in update_guard._RECEIVED
    _receive(guard, _weights(seed=5), _ctx(C.TASK_TRAIN, job))
    np.testing.assert_array_equal(update_guard._RECEIVED[job]["net.bias"], _weights(seed=5)["net.bias"])
    ciphertexts = DXO(DataKind.WEIGHTS, data={"net.weight": b"ckks...", "net.bias": b"ckks..."})
    _side(guard, FilterChainType.TASK_DATA_CHAIN).process(ciphertexts.to_shareable(), _ctx(C.TASK_TRAIN, job))
    with pytest.raises(ValueError, match="no plaintext global model was received"):
        _send(UpdateGuard(max_norm=1.0), _weights(seed=5), _ctx(C.TASK_TRAIN, job), kind=DataKind.WEIGHTS)


def test_a_received_model_of_another_shape_is_refused() -> None:
    ctx = _ctx()
    _receive(UpdateGuard(max_norm=1.0), {k: v.ravel() for k, v in _weights(seed=2).items()}, ctx)
    with pytest.raises(
        ValueError, match=re.escape("layer 'net.weight' has shape (1, 14), the received global")
    ):
        _send(UpdateGuard(max_norm=1.0), _weights(seed=2), ctx, kind=DataKind.WEIGHTS)


@pytest.mark.parametrize("dxo", PASS_THROUGH)
def test_statistics_and_metrics_pass_untouched(dxo: DXO) -> None:
    out = from_shareable(
        _side(UpdateGuard(max_norm=1.0), FilterChainType.TASK_RESULT_CHAIN).process(
            dxo.to_shareable(), _ctx()
        )
    )
    assert out.data == dxo.data and out.get_meta_prop(C.META_PRIVACY) is None


@pytest.mark.parametrize("task", [C.TASK_VALIDATE, C.TASK_SUBMIT_MODEL])
def test_other_tasks_pass_untouched(task: str) -> None:
    """No train update there: the model a site returns for validation is never clipped."""
    model = DXO(DataKind.WEIGHTS, data=_with_norm(50.0)).to_shareable()
    assert (
        _side(UpdateGuard(max_norm=1.0), FilterChainType.TASK_RESULT_CHAIN).process(model, _ctx(task))
        is model
    )
    assert _norm(from_shareable(model).data) == pytest.approx(50.0, rel=1e-6)


def test_a_declined_task_passes_and_a_scaffold_collection_is_refused() -> None:
    guard = _side(UpdateGuard(max_norm=1.0), FilterChainType.TASK_RESULT_CHAIN)
    declined = Shareable()
    declined.set_return_code("EXECUTION_EXCEPTION")
    assert guard.process(declined, _ctx()) is declined
    scaffold = DXO(DataKind.COLLECTION, data={"model": DXO(DataKind.WEIGHT_DIFF, data=_with_norm(5.0))})
    with pytest.raises(ValueError, match="^UpdateGuard: the result holds a model inside a COLLECTION"):
        guard.process(scaffold.to_shareable(), _ctx())


@pytest.mark.parametrize("bound", BAD_BOUNDS)
def test_a_bad_max_norm_is_refused(bound: object) -> None:
    with pytest.raises(
        ValueError,
        match=f"^UpdateGuard: max_norm must be a positive finite number, got {re.escape(repr(bound))}",
    ):
        UpdateGuard(max_norm=bound)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the shipped HE jobs' chains
def _chains(job: str) -> tuple[list[dict], list[dict]]:
    """The job's client filters of the train task: (data chain, result chain) as configured."""
    config = json.loads((ROOT / "jobs" / job / "app" / "config" / "config_fed_client.json").read_text())

    def train(groups: list[dict]) -> list[dict]:
        return [f for g in groups if C.TASK_TRAIN in g["tasks"] for f in g["filters"]]

    return train(config["task_data_filters"]), train(config["task_result_filters"])


def _build(spec: dict, chain: str):
    module, name = spec["path"].rsplit(".", 1)
    return _side(getattr(importlib.import_module(module), name)(**spec["args"]), chain)


@pytest.mark.parametrize("job", HE_JOBS)
def test_the_he_jobs_guard_after_decryption_and_before_encryption(job: str) -> None:
    data, result = _chains(job)
    names = [[f["path"].rsplit(".", 1)[1] for f in chain] for chain in (data, result)]
    assert names == [
        ["HEModelDecryptor", "HEShapeRestorer", "UpdateGuard"],
        ["UpdateGuard", "HEModelEncryptor"],
    ]
    assert data[-1]["args"] == result[0]["args"] and data[-1]["args"]["max_norm"] > 0


def test_heart_he_chain_sends_an_encrypted_update_clipped_to_the_bound(he_kits: PocLayout) -> None:
    """Round 1 of heart_he at a site: the global model arrives encrypted, the site trains far (norm
    50), its job filters send ciphertexts; decrypted with ANOTHER site's key (one shared secret
    key), the update's norm is the job's max_norm."""
    initial = to_numpy(TabularNet(in_features=14, arch="logreg", hidden=16, seed=0))
    updates = {
        s: ({k: v + 0.1 * i for k, v in initial.items()}, 10) for i, s in enumerate(("cleveland", "hungary"))
    }
    site_kit = he_kits.kit("cleveland") / "startup"
    round0 = he_fedavg_round(
        site_kit=site_kit,
        server_kit=he_kits.kit(he_kits.server) / "startup",
        updates=updates,
        initial=initial,
    )
    data_specs, result_specs = _chains("heart_he")
    bound = result_specs[0]["args"]["max_norm"]
    ctx = _ctx()
    with as_participant(site_kit):
        data = [_build(f, FilterChainType.TASK_DATA_CHAIN) for f in data_specs]
        result = [_build(f, FilterChainType.TASK_RESULT_CHAIN) for f in result_specs]
        for f in data + result:
            f.handle_event(EventType.START_RUN, ctx)
        task = wire(round0.global_model)
        for f in data:
            task = f.process(task, ctx)
        received = {k: np.asarray(v) for k, v in from_shareable(task).data.items()}
        local = {k: v + _with_norm(50.0, seed=7)[k] for k, v in received.items()}
        reply = DXO(DataKind.WEIGHTS, data=local, meta={MetaKey.NUM_STEPS_CURRENT_ROUND: 10}).to_shareable()
        for f in result:
            reply = f.process(reply, ctx)
        sent = from_shareable(wire(reply))
        nan = {k: v.copy() for k, v in local.items()}
        nan["net.bias"][0] = np.nan
        nan_reply = DXO(DataKind.WEIGHTS, data=nan, meta={MetaKey.NUM_STEPS_CURRENT_ROUND: 10}).to_shareable()
        with pytest.raises(ValueError, match=re.escape("NaN or infinite values in net.bias (1 values)")):
            for f in result:
                nan_reply = f.process(nan_reply, ctx)
    assert all(isinstance(v, ts.CKKSVector) for v in sent.data.values())  # the server gets ciphertexts only
    assert sent.get_meta_prop(C.META_PRIVACY) == [
        {"filter": "UpdateGuard", "max_norm": bound, "clipped": True}
    ]
    with as_participant(he_kits.kit("hungary") / "startup"):
        hungary = load_tenseal_context_from_workspace("client_context.tenseal", FLContext())
    decrypted = {
        k: np.asarray(ts.ckks_vector_from(hungary, v.serialize()).decrypt()) / 10
        for k, v in sent.data.items()
    }
    moved = {k: decrypted[k] - received[k].ravel() for k in received}
    assert _norm(moved) == pytest.approx(bound, rel=1e-4)
