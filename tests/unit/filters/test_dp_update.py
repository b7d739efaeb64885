"""DPUpdate, the strict scope's DP release, on real FLARE shareables, filter chains and workspaces.

The sent update's norm after clipping, the noise scale over many draws, ε against Opacus's own RDP
accountant, the ledger after a site restart, the refusal past ``max_epsilon``, WEIGHTS (with
``ExcludeLayers`` before it, as in the shipped scope) and WEIGHT_DIFF.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from flare_doubles import WorkspaceEngine
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.filter import FilterChainType, FilterContextKey
from nvflare.apis.fl_constant import FilterKey, FLContextKey, ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.utils.task_utils import apply_filters
from nvflare.apis.workspace import Workspace
from nvflare.app_common.app_constant import AppConstants
from nvflare.private.privacy_manager import Scope
from opacus.accountants import RDPAccountant

from fedhealth import constants as C
from fedhealth.filters import dp_update
from fedhealth.filters.dp_update import DPUpdate
from fedhealth.filters.exclude_layers import ExcludeLayers

DELTA = 1e-5
SHAPES = {"net.weight": (1, 14), "net.bias": (1,)}
# (update norm, clip norm, norm of what is sent with negligible noise)
CLIP_CASES = [(100.0, 1.0, 1.0), (5.0, 0.5, 0.5), (0.25, 1.0, 0.25), (1.0, 1.0, 1.0)]
# (clip norm, noise multiplier): the noise std must be 2 × z × C
NOISE_CASES = [(0.5, 1.3, 1.3), (2.0, 0.7, 2.8), (0.1, 3.0, 0.6)]
# (noise multiplier, releases, delta)
EPSILON_CASES = [(1.0, 1, 1e-5), (1.0, 19, 1e-5), (3.0, 19, 1e-4), (0.8, 5, 1e-3)]
BAD_ARGS = [
    ({"clip_norm": 0.0, "noise_multiplier": 1.0, "delta": DELTA}, "positive finite clip_norm"),
    ({"clip_norm": 1.0, "noise_multiplier": -1.0, "delta": DELTA}, "positive finite noise_multiplier"),
    ({"clip_norm": float("inf"), "noise_multiplier": 1.0, "delta": DELTA}, "positive finite clip_norm"),
    ({"clip_norm": 1.0, "noise_multiplier": 1.0, "delta": 1.0}, "delta in (0, 1)"),
    ({"clip_norm": 1.0, "noise_multiplier": 1.0, "delta": DELTA, "max_epsilon": 0}, "max_epsilon > 0"),
]


def _ctx(tmp_path: Path | None = None, task: str = C.TASK_TRAIN) -> FLContext:
    """A job of its own (the filter keeps per-job state), with a real workspace when given."""
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    ctx = FLContext()
    ctx.set_prop(ReservedKey.RUN_NUM, job_id, private=False, sticky=True)
    ctx.set_prop(FLContextKey.TASK_NAME, task, private=True, sticky=False)
    if tmp_path is not None:
        for folder in ("startup", "local"):
            (tmp_path / folder).mkdir(exist_ok=True)
        workspace = Workspace(str(tmp_path), site_name="switzerland")
        Path(workspace.get_run_dir(job_id)).mkdir(parents=True)
        ctx.set_prop(ReservedKey.ENGINE, WorkspaceEngine(workspace), private=True, sticky=True)
    return ctx


def _side(filter_: DPUpdate | ExcludeLayers, chain: str):
    filter_.set_prop(FilterContextKey.CHAIN_TYPE, chain)
    return filter_


def _weights(value: float = 0.0, seed: int | None = None) -> dict[str, np.ndarray]:
    if seed is None:
        return {k: np.full(s, value, np.float32) for k, s in SHAPES.items()}
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}


def _with_norm(norm: float) -> dict[str, np.ndarray]:
    update = _weights(seed=1)
    total = np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in update.values()))
    return {k: (v * (norm / total)).astype(np.float32) for k, v in update.items()}


def _norm(update: dict) -> float:
    return float(np.sqrt(sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in update.values())))


def _release(filter_: DPUpdate, update: dict, ctx: FLContext, kind: str = DataKind.WEIGHT_DIFF) -> DXO:
    out = _side(filter_, FilterChainType.TASK_RESULT_CHAIN).process(
        DXO(kind, data=update).to_shareable(), ctx
    )
    return from_shareable(out)


def _receive(filter_: DPUpdate, weights: dict, ctx: FLContext, round_index: int = 0) -> None:
    task = DXO(DataKind.WEIGHTS, data=weights).to_shareable()
    task.set_header(AppConstants.CURRENT_ROUND, round_index)
    _side(filter_, FilterChainType.TASK_DATA_CHAIN).process(task, ctx)


def _opacus_epsilon(noise_multiplier: float, releases: int, delta: float) -> float:
    accountant = RDPAccountant()
    for _ in range(releases):
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=1.0)
    return float(accountant.get_epsilon(delta=delta))


@pytest.mark.parametrize(("norm", "clip", "sent"), CLIP_CASES)
def test_the_sent_update_is_clipped(norm: float, clip: float, sent: float) -> None:
    update = _with_norm(norm)
    out = _release(DPUpdate(clip_norm=clip, noise_multiplier=1e-9, delta=DELTA, seed=0), update, _ctx())
    assert _norm(out.data) == pytest.approx(sent, rel=1e-5)
    direction = out.data["net.weight"].ravel() / np.linalg.norm(out.data["net.weight"])
    expected = update["net.weight"].ravel() / np.linalg.norm(update["net.weight"])
    np.testing.assert_allclose(direction, expected, atol=1e-5)  # clipping only scales


@pytest.mark.parametrize(("clip", "z", "std"), NOISE_CASES)
def test_noise_is_calibrated_to_the_clip(clip: float, z: float, std: float) -> None:
    draws = np.concatenate(
        [
            _release(DPUpdate(clip_norm=clip, noise_multiplier=z, delta=DELTA), _weights(), _ctx())
            .data["net.weight"]
            .ravel()
            for _ in range(2000)
        ]
    )  # 28,000 draws of a zero update
    assert draws.std() == pytest.approx(std, rel=0.02)
    assert abs(draws.mean()) < 0.03 * std


@pytest.mark.parametrize(("z", "releases", "delta"), EPSILON_CASES)
def test_epsilon_equals_opacus_rdp_accountant(z: float, releases: int, delta: float) -> None:
    ctx, filter_ = _ctx(), DPUpdate(clip_norm=1.0, noise_multiplier=z, delta=delta, seed=0)
    stamps = [
        _release(filter_, _weights(0.1), ctx).get_meta_prop(C.META_PRIVACY)[-1] for _ in range(releases)
    ]
    assert [s["releases"] for s in stamps] == list(range(1, releases + 1))
    assert stamps[-1]["epsilon"] == pytest.approx(_opacus_epsilon(z, releases, delta), rel=1e-9)
    assert stamps[-1] == {
        "filter": "DPUpdate",
        "round": None,
        "epsilon": stamps[-1]["epsilon"],
        "delta": delta,
        "noise_multiplier": z,
        "noise_std": 2 * z,
        "clip_norm": 1.0,
        "releases": releases,
    }
    assert all(a["epsilon"] < b["epsilon"] for a, b in zip(stamps, stamps[1:], strict=False))


def test_the_ledger_survives_a_site_restart(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    filter_ = DPUpdate(clip_norm=1.0, noise_multiplier=2.0, delta=DELTA, seed=5)
    for r in range(3):
        _receive(filter_, _weights(0.0), ctx, round_index=r)
        _release(filter_, _weights(0.3), ctx, kind=DataKind.WEIGHTS)
    path = tmp_path / ctx.get_job_id() / C.DP_UPDATE_LEDGER_FILE
    saved = json.loads(path.read_text())
    assert [e["round"] for e in saved["entries"]] == [0, 1, 2] and saved["releases"] == 3
    first_noise = _release(
        DPUpdate(clip_norm=1.0, noise_multiplier=2.0, delta=DELTA, seed=5), _weights(), _ctx()
    )
    # The site process restarts: the filters and their memory are new; the run folder is not.
    dp_update._LEDGERS.clear()
    dp_update._RECEIVED.clear()
    restarted = DPUpdate(clip_norm=1.0, noise_multiplier=2.0, delta=DELTA, seed=5)
    _receive(restarted, _weights(0.0), ctx, round_index=3)
    out = _release(restarted, _weights(0.0), ctx, kind=DataKind.WEIGHTS)
    stamp = out.get_meta_prop(C.META_PRIVACY)[-1]
    assert (stamp["releases"], stamp["round"]) == (4, 3)
    assert stamp["epsilon"] == pytest.approx(_opacus_epsilon(2.0, 4, DELTA), rel=1e-9)
    assert json.loads(path.read_text())["releases"] == 4
    # the restarted site's noise is not the noise of its first release again
    assert not np.allclose(out.data["net.weight"], first_noise.data["net.weight"])


def test_a_release_past_max_epsilon_is_refused(tmp_path: Path) -> None:
    two = _opacus_epsilon(1.0, 2, DELTA)
    ctx = _ctx(tmp_path)
    filter_ = DPUpdate(clip_norm=1.0, noise_multiplier=1.0, delta=DELTA, max_epsilon=two)
    for _ in range(2):
        _release(filter_, _weights(0.1), ctx)
    with pytest.raises(RuntimeError) as info:
        _release(filter_, _weights(0.1), ctx)
    three = _opacus_epsilon(1.0, 3, DELTA)
    assert str(info.value) == (
        f"{C.DP_UPDATE_DECLINED}: release 3 would raise epsilon from {two:.3f} to {three:.3f}, past this "
        f"scope's max_epsilon {two:g} (delta=1e-05); the site sends no update"
    )
    saved = json.loads((tmp_path / ctx.get_job_id() / C.DP_UPDATE_LEDGER_FILE).read_text())
    assert saved["releases"] == 2 and saved["declined"]["predicted_epsilon"] == pytest.approx(three)


def test_the_strict_scope_chain_keeps_the_bias_and_releases_the_rest(tmp_path: Path) -> None:
    """ExcludeLayers then DPUpdate, as FLARE applies a site's scope: the bias goes back as received,
    the weight's update is clipped and noised, and both filters stamp the DXO."""
    ctx = _ctx(tmp_path)
    scope = Scope()
    data, result = FilterChainType.TASK_DATA_CHAIN, FilterChainType.TASK_RESULT_CHAIN
    for chain, add, direction in (
        (data, scope.add_task_data_filter, FilterKey.IN),
        (result, scope.add_task_result_filter, FilterKey.OUT),
    ):
        add(_side(ExcludeLayers(layers=["net.bias"]), chain), direction)
        add(_side(DPUpdate(clip_norm=0.5, noise_multiplier=1e-9, delta=DELTA, seed=0), chain), direction)
    ctx.set_prop(FLContextKey.SCOPE_OBJECT, scope, private=True, sticky=False)
    received = _weights(seed=2)
    task = DXO(DataKind.WEIGHTS, data=received).to_shareable()
    task.set_header(AppConstants.CURRENT_ROUND, 7)
    apply_filters("task_data_filters", task, ctx, {}, C.TASK_TRAIN, FilterKey.IN)
    local = {k: v + 10.0 for k, v in received.items()}  # a large update, on the bias too
    sent = apply_filters(
        "task_result_filters",
        DXO(DataKind.WEIGHTS, data=local).to_shareable(),
        ctx,
        {},
        C.TASK_TRAIN,
        FilterKey.OUT,
    )
    out = from_shareable(sent)
    np.testing.assert_array_equal(out.data["net.bias"], received["net.bias"])  # no update, no noise
    moved = out.data["net.weight"].astype(np.float64) - received["net.weight"]
    assert np.linalg.norm(moved) == pytest.approx(0.5, rel=1e-5)
    assert [s["filter"] for s in out.get_meta_prop(C.META_PRIVACY)] == ["ExcludeLayers", "DPUpdate"]
    assert out.get_meta_prop(C.META_PRIVACY)[-1]["round"] == 7


def test_weight_diff_needs_no_received_model_but_weights_do() -> None:
    out = _release(
        DPUpdate(clip_norm=1.0, noise_multiplier=1e-9, delta=DELTA, seed=0), _with_norm(3.0), _ctx()
    )
    assert out.data_kind == DataKind.WEIGHT_DIFF and _norm(out.data) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="refusing to send local weights"):
        _release(
            DPUpdate(clip_norm=1.0, noise_multiplier=1.0, delta=DELTA), _weights(), _ctx(), DataKind.WEIGHTS
        )


def test_models_of_other_tasks_and_ciphertexts_are_not_remembered() -> None:
    ctx = _ctx(task=C.TASK_VALIDATE)  # another site's model to validate is not "the global model"
    filter_ = DPUpdate(clip_norm=1.0, noise_multiplier=1.0, delta=DELTA)
    _receive(filter_, _weights(1.0), ctx)
    he = _ctx()
    task = DXO(DataKind.WEIGHTS, data={"net.weight": b"ckks...", "net.bias": b"ckks..."}).to_shareable()
    _side(filter_, FilterChainType.TASK_DATA_CHAIN).process(task, he)
    for context in (ctx, he):
        with pytest.raises(ValueError, match="refusing to send local weights"):
            _release(filter_, _weights(), context, DataKind.WEIGHTS)


def test_a_model_inside_a_collection_is_refused_plain_results_pass() -> None:
    filter_ = _side(
        DPUpdate(clip_norm=1.0, noise_multiplier=1.0, delta=DELTA), FilterChainType.TASK_RESULT_CHAIN
    )
    scaffold = DXO(DataKind.COLLECTION, data={"model": DXO(DataKind.WEIGHTS, data=_weights())}).to_shareable()
    with pytest.raises(ValueError, match="inside a COLLECTION"):
        filter_.process(scaffold, _ctx())
    for dxo in (DXO(DataKind.COLLECTION, data={"count": 3}), DXO(DataKind.METRICS, data={"auc": 0.8})):
        out = from_shareable(filter_.process(dxo.to_shareable(), _ctx()))
        assert out.data == dxo.data
    declined = Shareable()
    declined.set_return_code("EXECUTION_EXCEPTION")
    assert filter_.process(declined, _ctx()) is declined


@pytest.mark.parametrize(("kwargs", "message"), BAD_ARGS)
def test_bad_args_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DPUpdate(**kwargs)
