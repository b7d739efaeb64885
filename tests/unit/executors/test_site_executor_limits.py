"""The site sets the floor, not the job: every executor checks a train request against the site's own
limits (``local/fedhealth_site.json.default`` under ``local/fedhealth_site.json``) and declines with the
reason, through the real ``execute`` path with FLARE's own objects (see ``test_heart_executor.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nvflare.apis.dxo import from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey, ReturnCode
from nvflare.app_common.app_constant import AppConstants
from site_args import heart
from test_heart_executor import _context, _kit, _model_task, _run, _scaling

from fedhealth import constants as C
from fedhealth.executors.site_executor import SiteExecutor

OWN, DEFAULT = "local/fedhealth_site.json", "local/fedhealth_site.json.default"
BUILT_IN = "fedhealth default, a site sets it in local/fedhealth_site.json limits"
DP = {"target_epsilon": 3.0, "max_grad_norm": 1.0}
STRICT = {"scope_limits": {"strict": {"max_learning_rate": 0.01, "allow_submit_model": False}}}
# (case, executor args, own settings, provisioned default settings, scope, learning rate, reasons or [])
TRAIN_CASES = [
    ("defaults_train", {"batch_size": 16}, {}, None, "", 0.05, []),
    (
        "batch_below_default",
        {"batch_size": 4},
        {},
        None,
        "",
        0.05,
        [f"site policy: batch_size 4 is below this site's min_batch_size 16 ({BUILT_IN})"],
    ),
    (
        "one_step_of_a_lowered_batch",
        {"batch_size": 4, "local_steps": 1},
        {"limits": {"min_batch_size": 4}},
        None,
        "",
        0.05,
        [
            "site policy: an update would mix 4 patients (batch_size 4 x 1 steps, at most the site's "
            f"training rows), below this site's min_examples_per_round 16 ({BUILT_IN})"
        ],
    ),
    (
        "examples_floor_from_the_provisioned_file",
        {"batch_size": 16, "local_steps": 1},
        {},
        {"limits": {"min_examples_per_round": 32}},
        "",
        0.05,
        [
            "site policy: an update would mix 16 patients (batch_size 16 x 1 steps, at most the site's "
            f"training rows), below this site's min_examples_per_round 32 ({DEFAULT} limits)"
        ],
    ),
    (
        "site_step_cap_counts",
        {"batch_size": 16, "local_steps": 4},
        {"max_local_steps": 1},
        {"limits": {"min_examples_per_round": 32}},
        "",
        0.05,
        ["an update would mix 16 patients (batch_size 16 x 1 steps"],
    ),
    (
        "own_file_wins_over_provisioned",
        {"batch_size": 16},
        {"limits": {"min_batch_size": 16}},
        {"limits": {"min_batch_size": 64}},
        "",
        0.05,
        [],
    ),
    (
        "learning_rate_of_the_attack",
        {"batch_size": 16},
        {},
        None,
        "",
        1000.0,
        [f"site policy: learning rate 1000 is above this site's max_learning_rate 1 ({BUILT_IN})"],
    ),
    (
        "scope_limit_applies_under_its_scope",
        {"batch_size": 16},
        {},
        STRICT,
        "strict",
        0.05,
        [
            "site policy: learning rate 0.05 is above this site's max_learning_rate 0.01 "
            f"({DEFAULT} scope_limits.strict)"
        ],
    ),
    ("scope_limit_not_under_another_scope", {"batch_size": 16}, {}, STRICT, "standard", 0.05, []),
    (
        "require_dp_without_dp",
        {"batch_size": 16},
        {"dp_max_epsilon": 4.0, "scope_limits": {"strict": {"require_dp": True}}},
        None,
        "strict",
        0.05,
        [
            "site policy: this site requires DP-SGD under scope 'strict' (require_dp, "
            f"{OWN} scope_limits.strict) and the job trains without the executor's dp settings"
        ],
    ),
    (
        "require_dp_epsilon_above_the_site_cap",
        {"batch_size": 16, "dp": {**DP, "target_epsilon": 8.0}},
        {"dp_max_epsilon": 4.0, "limits": {"require_dp": True}},
        None,
        "",
        0.05,
        [f"site policy: the job's DP-SGD target_epsilon 8 is above this site's dp_max_epsilon 4 ({OWN})"],
    ),
    (
        "require_dp_met",
        {"batch_size": 16, "dp": DP},
        {"limits": {"require_dp": True}},
        {"dp_max_epsilon": 4.0},
        "",
        0.05,
        [],
    ),
    (
        "the_whole_attack",
        {"batch_size": 1, "local_steps": 1},
        {},
        None,
        "",
        1000.0,
        ["batch_size 1 is below", "an update would mix 1 patients", "learning rate 1000 is above"],
    ),
]
# (settings file, its content, fragment of the error every task fails with)
BAD_FILES = [
    (DEFAULT, {"limits": {"min_batch_size": 0}}, f"{DEFAULT}: limits.min_batch_size"),
    (OWN, {"limits": {"min_batchsize": 8}}, f"{OWN}: limits.min_batchsize is not a limit"),
    (OWN, {"scope_limits": {"strict": {"max_learning_rate": "1"}}}, "scope_limits.strict.max_learning_rate"),
    (OWN, {"limits": {"require_dp": True}}, "require_dp needs this site's own 'dp_max_epsilon'"),
]


def _start(tmp_path: Path, splits: dict, own: dict, default: dict | None, **kwargs):
    kit = _kit(tmp_path, "cleveland", splits, settings=own)
    if default is not None:
        (kit / "local" / C.SITE_CONFIG_DEFAULT_FILE).write_text(json.dumps(default))
    fl_ctx = _context(kit, "cleveland")
    executor = SiteExecutor(**heart(stream_metrics=False, **kwargs))
    executor.handle_event(EventType.START_RUN, fl_ctx)
    return executor, fl_ctx


def _task(lr: float, round_index: int = 0):
    task = _model_task(lr=lr, round_index=round_index)
    task.set_header(AppConstants.NUM_ROUNDS, 3)
    return task


@pytest.mark.parametrize(
    ("args", "own", "default", "scope", "lr", "reasons"),
    [case[1:] for case in TRAIN_CASES],
    ids=[case[0] for case in TRAIN_CASES],
)
def test_train_request_against_the_site_limits(
    tmp_path: Path, heart_splits: dict, args, own, default, scope, lr, reasons
) -> None:
    executor, fl_ctx = _start(tmp_path, heart_splits, own, default, **args)
    fl_ctx.set_prop(FLContextKey.EFFECTIVE_JOB_SCOPE_NAME, scope, private=True, sticky=True)
    _scaling(executor, fl_ctx)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _task(lr))
    if not reasons:
        assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK, reply.get_header(C.HEADER_ERROR)
        assert from_shareable(reply).get_meta_prop(C.META_LOCAL_STEPS) >= 1
        return
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    message = reply.get_header(C.HEADER_ERROR)
    assert message.startswith("site cleveland failed task 'train': site policy: ")
    parts = message.removeprefix("site cleveland failed task 'train': ").split("; ")
    assert len(parts) == len(reasons)
    for part, reason in zip(parts, reasons, strict=True):
        assert part.startswith("site policy: ") and reason in part
    assert executor.runner.local_weights is None  # nothing was trained


@pytest.mark.parametrize(("scope", "allowed"), [("strict", False), ("standard", True), ("", True)])
def test_submit_model_follows_allow_submit_model(
    tmp_path: Path, heart_splits: dict, scope: str, allowed: bool
) -> None:
    executor, fl_ctx = _start(tmp_path, heart_splits, {}, STRICT, batch_size=16)
    _scaling(executor, fl_ctx)
    assert _run(executor, C.TASK_TRAIN, fl_ctx, _task(0.005)).get_return_code(ReturnCode.OK) == ReturnCode.OK
    fl_ctx.set_prop(FLContextKey.EFFECTIVE_JOB_SCOPE_NAME, scope, private=True, sticky=True)
    reply = _run(executor, C.TASK_SUBMIT_MODEL, fl_ctx)
    if allowed:
        assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
        assert set(from_shareable(reply).data) == {"net.weight", "net.bias"}
    else:
        assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
        assert reply.get_header(C.HEADER_ERROR) == (
            "site cleveland failed task 'submit_model': site policy: this site does not send its locally "
            f"trained model (allow_submit_model false, {DEFAULT} scope_limits.strict)"
        )


@pytest.mark.parametrize(("where", "content", "fragment"), BAD_FILES)
def test_bad_limits_fail_every_task_naming_file_and_key(
    tmp_path: Path, heart_splits: dict, where: str, content: dict, fragment: str
) -> None:
    own = content if where == OWN else {}
    default = content if where == DEFAULT else None
    executor, fl_ctx = _start(tmp_path, heart_splits, own, default)
    for task in (C.TASK_FED_STATS, C.TASK_TRAIN):
        reply = _run(executor, task, fl_ctx, _task(0.05))
        assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
        assert fragment in reply.get_header(C.HEADER_ERROR)


def test_scaffold_checks_its_own_learning_rate_schedule(tmp_path: Path, heart_splits: dict) -> None:
    executor, fl_ctx = _start(tmp_path, heart_splits, {}, None, lr=5.0)
    _scaling(executor, fl_ctx)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _task(0.05, round_index=1))
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    assert f"learning rate 5 is above this site's max_learning_rate 1 ({BUILT_IN})" in reply.get_header(
        C.HEADER_ERROR
    )


# (the site's min_examples_per_round, whether cleveland (199 training rows) sends its feature moments)
STATISTICS_CASES = [(16, True), (199, True), (200, False)]


@pytest.mark.parametrize(("floor", "sends"), STATISTICS_CASES)
def test_feature_moments_of_a_small_cell_are_not_released(
    tmp_path: Path, heart_splits: dict, floor: int, sends: bool
) -> None:
    executor, fl_ctx = _start(tmp_path, heart_splits, {"limits": {"min_examples_per_round": floor}}, None)
    reply = _run(executor, C.TASK_FED_STATS, fl_ctx)
    if sends:
        assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
        assert from_shareable(reply).data[C.M_N_TRAIN] == 199
    else:
        assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
        assert reply.get_header(C.HEADER_ERROR) == (
            "site cleveland failed task 'fed_stats': site policy: statistics of 199 training rows are a "
            f"small cell, below this site's min_examples_per_round 200 ({OWN} limits)"
        )
