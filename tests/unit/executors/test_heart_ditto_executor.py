"""SiteExecutor with the ditto algorithm: the global share trains as before; the personal model
stays at the site."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nvflare.apis.dxo import from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReturnCode
from site_args import heart
from test_heart_executor import JOB_ID, _context, _kit, _model_task, _run, _scaling

from fedhealth import constants as C
from fedhealth.executors.site_executor import SiteExecutor

# (lambda, the personal model equals the received global model)
LAMBDAS = [(float("inf"), True), (1e12, True), (0.1, False)]
BAD_ARGS = [
    ({"ditto_lambda": -1.0}, "non-negative"),
    ({"ditto_lambda": 1.0, "ditto_lr": 0.0}, "lr > 0"),
    ({"ditto_lambda": 1.0, "ditto_epochs": 0}, "epochs >= 1"),
]


def _start(tmp_path: Path, splits: dict, **kwargs: object):
    kit = _kit(tmp_path / ("ditto" if kwargs else "plain"), "cleveland", splits)
    fl_ctx = _context(kit, "cleveland")
    executor = SiteExecutor(**heart(**kwargs))
    executor.handle_event(EventType.START_RUN, fl_ctx)
    _scaling(executor, fl_ctx)
    return executor, fl_ctx, kit


@pytest.mark.parametrize(("lam", "at_global"), LAMBDAS)
def test_personal_model_and_metrics(tmp_path, heart_splits, lam, at_global):
    executor, fl_ctx, kit = _start(tmp_path, heart_splits, ditto_lambda=lam, ditto_lr=0.05)
    task = _model_task(lr=0.05)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, task)
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
    metrics = from_shareable(reply).get_meta_prop(C.META_SITE_METRICS)
    assert {"personal_accuracy", "personal_auc", "personal_loss", "global_accuracy"} <= set(metrics)
    saved = np.load(kit / JOB_ID / C.PERSONAL_MODEL_FILE)
    sent = from_shareable(task).data
    distance = max(float(np.abs(saved[k] - sent[k]).max()) for k in sent)
    assert (distance < 1e-6) is at_global
    if at_global:
        assert metrics["personal_accuracy"] == pytest.approx(metrics["global_accuracy"])


def test_the_shared_update_is_the_plain_executors(tmp_path, heart_splits):
    ditto, ctx_a, _ = _start(tmp_path, heart_splits, ditto_lambda=0.1)
    plain, ctx_b, _ = _start(tmp_path, heart_splits)
    got = from_shareable(_run(ditto, C.TASK_TRAIN, ctx_a, _model_task(lr=0.05))).data
    want = from_shareable(_run(plain, C.TASK_TRAIN, ctx_b, _model_task(lr=0.05))).data
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v)


@pytest.mark.parametrize(("args", "message"), BAD_ARGS)
def test_bad_settings_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        SiteExecutor(**heart(**args))
