"""SiteExecutor on the heart task with the dp_sgd algorithm: the ledger travels with the update,
a site past its budget declines.

Same FLARE objects and stand-in engine as ``test_heart_executor.py`` (imported from it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nvflare.apis.dxo import from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReturnCode
from nvflare.app_common.app_constant import AppConstants
from site_args import heart
from test_heart_executor import JOB_ID, _model_task, _run, _scaling, _started

from fedhealth import constants as C
from fedhealth.executors.site_executor import SiteExecutor

DP = {"target_epsilon": 3.0, "max_grad_norm": 1.0}
ROUNDS = 4
LEDGER_KEYS = {
    "round",
    "epsilon",
    "delta",
    "noise_multiplier",
    "max_grad_norm",
    "sample_rate",
    "steps",
    "total_steps",
    "accountant",
}
# (executor args, fragment of the refusal)
REFUSED = [
    ({"batch_size": 4, "dp": DP}, "batch_size 4 is below 8"),
    ({"batch_size": 16, "mu": 0.1, "dp": DP}, "DP-SGD cannot run with ['fedprox']"),
    ({"batch_size": 16, "dp": {**DP, "noise": 1}}, "unknown dp settings ['noise']"),
]


def _task(round_index: int):
    task = _model_task(lr=0.1, round_index=round_index)
    task.set_header(AppConstants.NUM_ROUNDS, ROUNDS)
    return task


@pytest.mark.parametrize(("args", "fragment"), REFUSED)
def test_unsafe_dp_jobs_are_refused_at_start(args: dict, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        SiteExecutor(**heart(**args))
    assert fragment in str(info.value)


def test_the_ledger_travels_with_each_update_and_survives_a_restart(
    tmp_path: Path, heart_splits: dict
) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits, batch_size=16, dp=DP)
    _scaling(executor, fl_ctx)
    epsilons = []
    for r in range(2):
        reply = _run(executor, C.TASK_TRAIN, fl_ctx, _task(r))
        assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
        ledger = from_shareable(reply).get_meta_prop(C.META_SITE_METRICS)[C.M_PRIVACY]
        assert set(ledger) == LEDGER_KEYS
        assert (ledger["round"], ledger["steps"], ledger["total_steps"]) == (
            r,
            13,
            13 * (r + 1),
        )  # ceil(199/16)
        assert ledger["delta"] == pytest.approx(0.1 / 199) and ledger["sample_rate"] == 1 / 13
        epsilons.append(ledger["epsilon"])
    assert 0 < epsilons[0] < epsilons[1] < DP["target_epsilon"]
    restarted = SiteExecutor(**heart(batch_size=16, dp=DP))  # the site's process restarts within the job
    restarted.handle_event(EventType.START_RUN, fl_ctx)
    reply = _run(restarted, C.TASK_TRAIN, fl_ctx, _task(2))
    ledger = from_shareable(reply).get_meta_prop(C.META_SITE_METRICS)[C.M_PRIVACY]
    assert ledger["total_steps"] == 39 and ledger["epsilon"] > epsilons[1]
    saved = json.loads((tmp_path / "cleveland" / JOB_ID / C.DP_LEDGER_FILE).read_text())
    assert [e["round"] for e in saved["entries"]] == [0, 1, 2]


def test_a_site_at_its_own_budget_declines_with_a_reason(tmp_path: Path, heart_splits: dict) -> None:
    settings = {C.SITE_DP_MAX_EPSILON_KEY: 0.5}
    executor, fl_ctx = _started(tmp_path, heart_splits, batch_size=16, dp=DP, settings=settings)
    _scaling(executor, fl_ctx)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _task(0))
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    reason = reply.get_header(C.HEADER_ERROR)
    assert reason.startswith("site cleveland failed task 'train': privacy budget exhausted: round 0")
    assert "past this site's budget of 0.500" in reason and "sends no update" in reason
    assert "DXO" not in reply  # no weights in the reply
    saved = json.loads((tmp_path / "cleveland" / JOB_ID / C.DP_LEDGER_FILE).read_text())
    assert saved["declined"]["round"] == 0 and saved["entries"] == [] and saved["budget"] == 0.5
