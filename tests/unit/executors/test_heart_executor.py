"""SiteExecutor.execute on the heart task with FLARE's own FLContext, Workspace, DXO and Shareable objects.

FLARE's real client engine needs a running client process, so the engine here is a stand-in that
offers ``get_workspace()`` (all the executor asks of it) and swallows log events; the full path runs
in the POC integration tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from flare_doubles import site_context
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.app_common.app_constant import AppConstants
from site_args import heart

from fedhealth import constants as C
from fedhealth.data.features import combine_moments, feature_names
from fedhealth.data.site_data import write_site
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth.models.state import to_numpy
from fedhealth.models.tabular import TabularNet

JOB_ID = "job-1"
# site -> (n_train, n_test, chol recorded in training rows)
SITES = {"cleveland": (199, 104, 199), "va_long_beach": (85, 45, 63)}
# (task name, return code) for tasks that need nothing from the server
UNKNOWN_TASKS = ["training", "", "TRAIN"]
# (executor arguments, the site's max_local_steps or None, local steps taken); cleveland: 199 rows
WORKLOAD_CASES = [
    ({}, None, 13),  # one epoch of batches of 16: ceil(199 / 16)
    ({}, 5, 5),
    ({}, 13, 13),
    ({}, 100, 13),  # a cap above the job's workload changes nothing
    ({"local_epochs": 2}, None, 26),
    ({"local_epochs": 2}, 20, 20),
    ({"local_epochs": 3, "batch_size": 32}, 10, 10),  # 3 * 7 = 21 planned
    ({"local_steps": 30}, None, 30),
    ({"local_steps": 30}, 7, 7),
    ({"local_steps": 30}, 1, 1),  # one step of 16 still meets min_examples_per_round 16
]
# max_local_steps values a site may not set
BAD_CAPS = [-5, 0, 2.5, "20", True, [10]]


def _kit(root: Path, site: str, splits: dict, drop: str | None = None, settings: dict | None = None) -> Path:
    kit = root / site
    (kit / "startup").mkdir(parents=True)
    (kit / "local").mkdir()
    settings = {C.SITE_DATA_ROOT_KEY: "hospital", **(settings or {})}
    (kit / "local" / C.SITE_CONFIG_FILE).write_text(json.dumps(settings))
    train, test = splits[site].train, splits[site].test
    write_site(kit / "hospital", train.drop(columns=drop) if drop else train, test)
    return kit


def _context(kit: Path, site: str) -> FLContext:
    fl_ctx = site_context(kit, site, JOB_ID)
    return fl_ctx


def _started(tmp_path: Path, splits: dict, site: str = "cleveland", **kwargs: object):
    kit = _kit(tmp_path, site, splits, kwargs.pop("drop", None), kwargs.pop("settings", None))
    fl_ctx = _context(kit, site)
    executor = SiteExecutor(**heart(**kwargs))
    executor.handle_event(EventType.START_RUN, fl_ctx)
    return executor, fl_ctx


def _run(
    executor: SiteExecutor, task: str, fl_ctx: FLContext, shareable: Shareable | None = None
) -> Shareable:
    return executor.execute(task, shareable if shareable is not None else Shareable(), fl_ctx, Signal())


def _scaling(executor: SiteExecutor, fl_ctx: FLContext) -> dict:
    moments = from_shareable(_run(executor, C.TASK_FED_STATS, fl_ctx)).data
    stats = {
        **combine_moments([{k: moments[k] for k in (C.S_COUNT, C.S_SUM, C.S_SUMSQ)}]),
        C.S_FEATURES: moments[C.S_FEATURES],
    }
    reply = _run(executor, C.TASK_SET_SCALING, fl_ctx, DXO(DataKind.COLLECTION, data=stats).to_shareable())
    assert reply.get_return_code() == ReturnCode.OK
    return stats


def _model_task(lr: float | None = 0.05, round_index: int = 0, in_features: int = 14) -> Shareable:
    meta = {} if lr is None else {C.META_LEARNING_RATE: lr, C.META_ROUND: round_index}
    shareable = DXO(
        DataKind.WEIGHTS, data=to_numpy(TabularNet(in_features=in_features, seed=0)), meta=meta
    ).to_shareable()
    shareable.set_header(AppConstants.CURRENT_ROUND, round_index)
    return shareable


@pytest.mark.parametrize(("site", "sizes"), SITES.items())
def test_fed_stats_returns_moments_with_counts(
    tmp_path: Path, heart_splits: dict, site: str, sizes: tuple
) -> None:
    n_train, _, chol_observed = sizes
    executor, fl_ctx = _started(tmp_path, heart_splits, site)
    reply = _run(executor, C.TASK_FED_STATS, fl_ctx)
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
    dxo = from_shareable(reply)
    assert dxo.data_kind == DataKind.COLLECTION
    assert dxo.data[C.S_FEATURES] == feature_names(True)
    assert dxo.data[C.M_N_TRAIN] == n_train
    counts = dxo.data[C.S_COUNT]
    chol = feature_names(True).index("chol")
    assert counts[chol] in (chol_observed, None)
    assert all(c in (float(n_train), None) for i, c in enumerate(counts) if i != chol)
    assert len(dxo.data[C.S_SUM]) == len(dxo.data[C.S_SUMSQ]) == 14
    withheld = [i for i, c in enumerate(counts) if c is None]  # small cells (a one-hot count below 5)
    assert all(dxo.data[C.S_SUM][i] is None and dxo.data[C.S_SUMSQ][i] is None for i in withheld)
    assert len(withheld) < 14 - 9  # the continuous features of a site with >= 5 patients are released


def test_train_after_set_scaling_returns_sample_weighted_weights(tmp_path: Path, heart_splits: dict) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits)
    stats = _scaling(executor, fl_ctx)
    saved = json.loads((tmp_path / "cleveland" / JOB_ID / C.SCALING_STATE_FILE).read_text())
    assert saved == stats
    task = _model_task(lr=0.05, round_index=3)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, task)
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK
    dxo = from_shareable(reply)
    assert dxo.data_kind == DataKind.WEIGHTS
    assert dxo.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND) == 199
    assert {k: v.shape for k, v in dxo.data.items()} == {"net.weight": (1, 14), "net.bias": (1,)}
    sent = from_shareable(task).data
    assert not np.array_equal(dxo.data["net.weight"], sent["net.weight"])
    metrics = dxo.get_meta_prop(C.META_SITE_METRICS)
    assert (metrics["n_train"], metrics["n_test"], metrics["lr"], metrics["round"]) == (199, 104, 0.05, 3)
    assert metrics["steps"] == dxo.get_meta_prop(C.META_LOCAL_STEPS) == 13  # ceil(199 / 16), one epoch
    assert 0.0 <= metrics["global_accuracy"] <= 1.0
    assert dxo.get_meta_prop(MetaKey.INITIAL_METRICS) == metrics["global_accuracy"]
    submitted = from_shareable(_run(executor, C.TASK_SUBMIT_MODEL, fl_ctx))
    np.testing.assert_array_equal(submitted.data["net.weight"], dxo.data["net.weight"])


def test_validate_returns_metrics(tmp_path: Path, heart_splits: dict) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits, "va_long_beach")
    _scaling(executor, fl_ctx)
    dxo = from_shareable(_run(executor, C.TASK_VALIDATE, fl_ctx, _model_task()))
    assert dxo.data_kind == DataKind.METRICS
    assert (dxo.data["n_train"], dxo.data["n_test"]) == (85.0, 45.0)
    assert 0.0 <= dxo.data["accuracy"] <= 1.0 and 0.0 <= dxo.data["auc"] <= 1.0


def test_scaling_survives_a_site_restart(tmp_path: Path, heart_splits: dict) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits)
    _scaling(executor, fl_ctx)
    restarted = SiteExecutor(**heart())
    restarted.handle_event(EventType.START_RUN, fl_ctx)
    reply = _run(restarted, C.TASK_TRAIN, fl_ctx, _model_task())
    assert from_shareable(reply).get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND) == 199


def test_submit_model_before_training_is_empty(tmp_path: Path, heart_splits: dict) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits)
    assert _run(executor, C.TASK_SUBMIT_MODEL, fl_ctx).get_return_code() == ReturnCode.EMPTY_RESULT


# (task shareable factory, whether to set scaling first, fragments of the fedhealth_error header)
FAILING_TASKS = [
    (
        lambda: _model_task(lr=None),
        True,
        ["failed task 'train'", "carries no learning rate", "ScheduledShareableGenerator"],
    ),
    (lambda: _model_task(), False, ["failed task 'train'", "no feature scaling yet", "federated statistics"]),
    (lambda: _model_task(in_features=13), True, ["takes 13 features but this site encodes 14"]),
    (lambda: DXO(DataKind.METRICS, data={"a": 1}).to_shareable(), True, ["expected model weights"]),
]


@pytest.mark.parametrize(("make_task", "scaled", "fragments"), FAILING_TASKS)
def test_bad_train_task_fails_with_reason(
    tmp_path: Path, heart_splits: dict, make_task, scaled: bool, fragments: list[str]
) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits)
    if scaled:
        _scaling(executor, fl_ctx)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, make_task())
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    message = reply.get_header(C.HEADER_ERROR)
    assert message.startswith("site cleveland failed task")
    for fragment in fragments:
        assert fragment in message


def test_set_scaling_for_other_features_fails(tmp_path: Path, heart_splits: dict) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits)
    stats = {"mean": [0.0] * 13, "std": [1.0] * 13, C.S_FEATURES: feature_names(False)}
    reply = _run(executor, C.TASK_SET_SCALING, fl_ctx, DXO(DataKind.COLLECTION, data=stats).to_shareable())
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    assert "computed for other features" in reply.get_header(C.HEADER_ERROR)


@pytest.mark.parametrize("task", [C.TASK_FED_STATS, C.TASK_TRAIN, C.TASK_VALIDATE])
def test_site_missing_chol_column_names_file_and_column(
    tmp_path: Path, heart_splits: dict, task: str
) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits, drop="chol")
    reply = _run(executor, task, fl_ctx, _model_task())
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    message = reply.get_header(C.HEADER_ERROR)
    assert f"site cleveland failed task '{task}'" in message
    assert "heart_disease/train.csv" in message and "'chol'" in message


@pytest.mark.parametrize("task", UNKNOWN_TASKS)
def test_unknown_task(tmp_path: Path, heart_splits: dict, task: str) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits)
    assert _run(executor, task, fl_ctx).get_return_code() == ReturnCode.TASK_UNKNOWN


def test_aborted_task(tmp_path: Path, heart_splits: dict) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits)
    signal = Signal()
    signal.trigger("stop")
    reply = executor.execute(C.TASK_FED_STATS, Shareable(), fl_ctx, signal)
    assert reply.get_return_code() == ReturnCode.TASK_ABORTED


@pytest.mark.parametrize(
    ("args", "message"), [({"mu": -1.0}, "mu"), ({"local_steps": 0, "local_epochs": 0}, "local")]
)
def test_constructor_checks_training_args(args: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SiteExecutor(**heart(**args))


def _train_once(tmp_path: Path, heart_splits: dict, cap: int | None, **kwargs: object) -> DXO:
    settings = {} if cap is None else {C.SITE_MAX_LOCAL_STEPS_KEY: cap}
    executor, fl_ctx = _started(tmp_path, heart_splits, settings=settings, **kwargs)
    _scaling(executor, fl_ctx)
    reply = _run(executor, C.TASK_TRAIN, fl_ctx, _model_task())
    assert reply.get_return_code(ReturnCode.OK) == ReturnCode.OK, reply.get_header(C.HEADER_ERROR)
    return from_shareable(reply)


@pytest.mark.parametrize(("kwargs", "cap", "steps"), WORKLOAD_CASES)
def test_site_cap_on_local_steps(
    tmp_path: Path, heart_splits: dict, kwargs: dict, cap: int | None, steps: int
) -> None:
    dxo = _train_once(tmp_path, heart_splits, cap, **kwargs)
    assert dxo.get_meta_prop(C.META_LOCAL_STEPS) == steps
    assert dxo.get_meta_prop(C.META_SITE_METRICS)["steps"] == steps
    assert dxo.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND) == 199  # the sample weight is unchanged


@pytest.mark.parametrize("kwargs", [{}, {"local_epochs": 2}, {"local_steps": 30}])
def test_a_cap_that_does_not_bind_leaves_the_training_unchanged(
    tmp_path: Path, heart_splits: dict, kwargs: dict
) -> None:
    free = _train_once(tmp_path / "free", heart_splits, None, **kwargs)
    capped = _train_once(tmp_path / "capped", heart_splits, 1000, **kwargs)
    for name, value in free.data.items():
        np.testing.assert_array_equal(capped.data[name], value)
    tight = _train_once(tmp_path / "tight", heart_splits, 3, **kwargs)
    assert not np.array_equal(tight.data["net.weight"], free.data["net.weight"])


@pytest.mark.parametrize("cap", BAD_CAPS)
def test_a_bad_cap_fails_every_task_naming_file_and_key(
    tmp_path: Path, heart_splits: dict, cap: object
) -> None:
    executor, fl_ctx = _started(tmp_path, heart_splits, settings={C.SITE_MAX_LOCAL_STEPS_KEY: cap})
    for task in (C.TASK_FED_STATS, C.TASK_TRAIN):
        reply = _run(executor, task, fl_ctx, _model_task())
        assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
        message = reply.get_header(C.HEADER_ERROR)
        assert message.startswith(f"site cleveland failed task '{task}': local/fedhealth_site.json: ")
        assert "'max_local_steps' must be a whole number of local optimizer steps, at least 1" in message
        assert message.endswith(f"got {cap!r}")


def test_a_binding_cap_on_epochs_trains_like_that_many_steps(tmp_path: Path, heart_splits: dict) -> None:
    capped = _train_once(tmp_path / "capped", heart_splits, 20, local_epochs=2)
    steps = _train_once(tmp_path / "steps", heart_splits, None, local_steps=20)
    for name, value in steps.data.items():
        np.testing.assert_array_equal(capped.data[name], value)


def test_train_reports_its_own_task_seconds(tmp_path: Path, heart_splits: dict) -> None:
    started = time.perf_counter()
    dxo = _train_once(tmp_path, heart_splits, None)
    elapsed = time.perf_counter() - started
    task_s = dxo.get_meta_prop(C.META_SITE_METRICS)[C.M_TASK_S]
    assert 0.0 < task_s < elapsed  # the train task only, not the site's start before it
