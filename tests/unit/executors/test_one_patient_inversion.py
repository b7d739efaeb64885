"""Issue 15, finding 4, at the executor: the one-patient inversion works where a site lowers its floors
to the attack's settings (so the helper can fail), is declined under the default floors, and recovers
no patient once the floors are met.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from inversion import MATCH_TOLERANCE, invert, nearest_row, site_rows
from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_constant import ReturnCode
from test_heart_executor import _run, _scaling
from test_site_executor_limits import _start, _task

from fedhealth import constants as C
from fedhealth.data.site_data import TARGET, SiteTable

ATTACK = {"batch_size": 1, "local_steps": 1, "optimizer": "sgd"}
LOWERED = {"limits": {"min_batch_size": 1, "min_examples_per_round": 1, "max_learning_rate": 1e4}}
# (executor args, the site's own settings, learning rate, the recovered vector is a training row)
CASES = [
    ({**ATTACK, "seed": 0}, LOWERED, 1000.0, True),
    ({**ATTACK, "seed": 7}, LOWERED, 1000.0, True),  # the seed picks the patient
    ({**ATTACK, "seed": 0}, LOWERED, 0.05, True),  # the learning rate only scales the update
    ({"batch_size": 16, "local_steps": 1}, {}, 0.05, False),  # the floors met: one step of 16
    ({"batch_size": 16}, {}, 0.05, False),  # one epoch of batches of 16
    ({"batch_size": 16}, {}, 1.0, False),  # at the largest learning rate the site accepts
]


def _table(frame) -> SiteTable:
    return SiteTable(features=frame.drop(columns=TARGET), labels=frame[TARGET].to_numpy("float32"))


def _rows(tmp_path, heart_splits) -> np.ndarray:
    scaling = json.loads((tmp_path / "cleveland" / "job-1" / C.SCALING_STATE_FILE).read_text())
    split = heart_splits["cleveland"]
    return site_rows(_table(split.train), _table(split.test), scaling)


@pytest.mark.parametrize(("args", "own", "lr", "recovered"), CASES)
def test_one_patient_inversion(
    tmp_path, heart_splits, args: dict, own: dict, lr: float, recovered: bool
) -> None:
    executor, fl_ctx = _start(tmp_path, heart_splits, own, None, **args)
    _scaling(executor, fl_ctx)
    task = _task(lr)
    received = {k: np.array(v) for k, v in from_shareable(task).data.items()}
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, task)
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK, reply.get_header(C.HEADER_ERROR)
    sent = from_shareable(reply).data
    match = nearest_row(invert(received, sent), _rows(tmp_path, heart_splits))
    if recovered:
        assert match.distance < MATCH_TOLERANCE  # the patient's whole record, to float32 precision
        assert match.second > 100 * MATCH_TOLERANCE  # and no other patient is near it
    else:
        # Farther from every patient than neighbouring patients are from each other (about 2.3 here).
        assert match.distance > 5.0, match


def test_the_attack_is_declined_under_the_default_floors(tmp_path, heart_splits) -> None:
    executor, fl_ctx = _start(tmp_path, heart_splits, {}, None, **ATTACK)
    _scaling(executor, fl_ctx)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _task(1000.0))
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    message = reply.get_header(C.HEADER_ERROR)
    assert message.count("site policy: ") == 3
    assert "min_batch_size 16" in message and "min_examples_per_round 16" in message
    assert "max_learning_rate 1" in message
