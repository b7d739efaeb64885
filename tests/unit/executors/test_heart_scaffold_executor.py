"""SiteExecutor with the scaffold algorithm: SCAFFOLD's site side under FLARE's
ScatterAndGatherScaffold task format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReturnCode
from nvflare.app_common.app_constant import AlgorithmConstants, AppConstants
from site_args import heart
from test_heart_executor import _context, _kit, _model_task, _run, _scaling

from fedhealth import constants as C
from fedhealth.client.scaffold import CONTROL_NORM
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth.models.state import to_numpy
from fedhealth.models.tabular import TabularNet

LR, GAMMA = 0.05, 0.9
# (round, server variate added to every parameter)
ROUNDS = [(0, 0.0), (2, 0.0), (1, 0.3)]
BAD_ARGS = [({"lr": 0.0}, "lr > 0"), ({"lr": 0.1, "gamma": 1.5}, "gamma in")]
LR_SCALE = 10.0  # heavy-ball momentum 0.9: the effective step is lr / (1 - 0.9)


def _start(tmp_path: Path, splits: dict, **kwargs: object):
    kit = _kit(tmp_path / ("scaffold" if "lr" in kwargs else "plain"), "cleveland", splits)
    fl_ctx = _context(kit, "cleveland")
    executor = SiteExecutor(**heart(**kwargs))
    executor.handle_event(EventType.START_RUN, fl_ctx)
    _scaling(executor, fl_ctx)
    return executor, fl_ctx


def _scaffold_task(round_index: int, c_value: float):
    weights = to_numpy(TabularNet(in_features=14, seed=0))
    c = {k: np.full_like(v, c_value) for k, v in weights.items()}
    task = DXO(
        DataKind.COLLECTION,
        data={
            AppConstants.MODEL_WEIGHTS: DXO(DataKind.WEIGHTS, data=weights),
            AlgorithmConstants.SCAFFOLD_CTRL_GLOBAL: DXO(DataKind.WEIGHT_DIFF, data=c),
        },
    ).to_shareable()
    task.set_header(AppConstants.CURRENT_ROUND, round_index)
    return task, weights, c


@pytest.mark.parametrize(("round_index", "c_value"), ROUNDS)
def test_reply_carries_weights_and_the_option_ii_variate_step(tmp_path, heart_splits, round_index, c_value):
    executor, fl_ctx = _start(tmp_path, heart_splits, lr=LR, gamma=GAMMA)
    task, start, c = _scaffold_task(round_index, c_value)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, task)
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
    parts = from_shareable(reply).data
    weights, ctrl = parts[AppConstants.MODEL_WEIGHTS], parts[AlgorithmConstants.SCAFFOLD_CTRL_DIFF]
    assert weights.data_kind == DataKind.WEIGHTS and ctrl.data_kind == DataKind.WEIGHT_DIFF
    assert (
        weights.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND)
        == ctrl.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND)
        == 199
    )
    lr = LR * GAMMA**round_index
    assert weights.get_meta_prop(C.META_SITE_METRICS)["lr"] == pytest.approx(lr)
    steps = weights.get_meta_prop(C.META_LOCAL_STEPS)
    for k in start:  # c_i was 0: dc = -c + (x - y) / (K lr)
        expected = -c[k] + (start[k].astype("float64") - weights.data[k]) / (steps * lr)
        np.testing.assert_allclose(ctrl.data[k], expected, rtol=1e-4, atol=1e-5)


def test_lr_scale_sets_the_step_the_variates_divide_by(tmp_path, heart_splits):
    kit = _kit(tmp_path, "cleveland", heart_splits)
    fl_ctx = _context(kit, "cleveland")
    args = heart()
    args["algorithms"] = [{"name": "scaffold", "args": {"lr": LR, "lr_scale": LR_SCALE}}]
    executor = SiteExecutor(**args)
    executor.handle_event(EventType.START_RUN, fl_ctx)
    _scaling(executor, fl_ctx)
    task, start, c = _scaffold_task(0, 0.2)
    parts = from_shareable(_run(executor, C.TASK_TRAIN, fl_ctx, task)).data
    weights, ctrl = parts[AppConstants.MODEL_WEIGHTS], parts[AlgorithmConstants.SCAFFOLD_CTRL_DIFF]
    assert weights.get_meta_prop(C.META_SITE_METRICS)["lr"] == pytest.approx(LR)  # trains at lr
    steps = weights.get_meta_prop(C.META_LOCAL_STEPS)
    for k in start:
        expected = -c[k] + (start[k].astype("float64") - weights.data[k]) / (steps * LR * LR_SCALE)
        np.testing.assert_allclose(ctrl.data[k], expected, rtol=1e-4, atol=1e-5)
    c_local = executor.runner.algorithm("scaffold")._c_local  # c_i was 0: c_i+ is this round's step
    norm = np.sqrt(sum(float(np.sum(v * v)) for v in c_local.values()))
    assert weights.get_meta_prop(C.META_SITE_METRICS)[CONTROL_NORM] == pytest.approx(norm) and norm > 0


def test_zero_variates_train_exactly_like_the_plain_executor(tmp_path, heart_splits):
    scaffold_exec, ctx_a = _start(tmp_path, heart_splits, lr=LR)
    plain, ctx_b = _start(tmp_path, heart_splits)
    task, _, _ = _scaffold_task(0, 0.0)
    got = from_shareable(_run(scaffold_exec, C.TASK_TRAIN, ctx_a, task)).data[AppConstants.MODEL_WEIGHTS]
    want = from_shareable(_run(plain, C.TASK_TRAIN, ctx_b, _model_task(lr=LR)))
    for k, v in want.data.items():
        np.testing.assert_allclose(got.data[k], v, atol=1e-7)


def test_the_site_variate_persists_between_rounds(tmp_path, heart_splits):
    executor, fl_ctx = _start(tmp_path, heart_splits, lr=LR)
    first = from_shareable(_run(executor, C.TASK_TRAIN, fl_ctx, _scaffold_task(0, 0.0)[0])).data
    c_after_first = {k: v.copy() for k, v in executor.runner.algorithm("scaffold")._c_local.items()}
    for k, v in first[AlgorithmConstants.SCAFFOLD_CTRL_DIFF].data.items():
        np.testing.assert_allclose(c_after_first[k], v, rtol=1e-5, atol=1e-6)  # c_i started at 0
    task, start, c = _scaffold_task(1, 0.1)
    second = from_shareable(_run(executor, C.TASK_TRAIN, fl_ctx, task)).data
    weights = second[AppConstants.MODEL_WEIGHTS]
    steps = weights.get_meta_prop(C.META_LOCAL_STEPS)
    for k in start:  # dc = c_i+ - c_i = -c + (x - y) / (K lr)
        expected = -c[k] + (start[k].astype("float64") - weights.data[k]) / (steps * LR)
        np.testing.assert_allclose(
            second[AlgorithmConstants.SCAFFOLD_CTRL_DIFF].data[k], expected, rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            executor.runner.algorithm("scaffold")._c_local[k],
            c_after_first[k] + expected,
            rtol=1e-4,
            atol=1e-5,
        )


def test_a_plain_weights_task_fails_with_the_reason(tmp_path, heart_splits):
    executor, fl_ctx = _start(tmp_path, heart_splits, lr=LR)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _model_task(lr=LR))
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    assert "ScatterAndGatherScaffold" in reply.get_header(C.HEADER_ERROR)


@pytest.mark.parametrize(("args", "message"), BAD_ARGS)
def test_bad_schedule_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        SiteExecutor(**heart(**args))
