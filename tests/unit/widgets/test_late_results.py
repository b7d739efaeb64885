"""A result that arrives after its round closed, as FLARE 2.9 hands it over: recorded as late, not as used.

The events come in the order ``wf_comm_server._do_process_submission`` fires them for a submission
whose client task is gone (``BEFORE_PROCESS_SUBMISSION`` from the server runner, then
``BEFORE_PROCESS_RESULT_OF_UNKNOWN_TASK``, the workflow's ``process_result_of_unknown_task``,
``AFTER_PROCESS_RESULT_OF_UNKNOWN_TASK``); the workflow is FLARE's own ScatterAndGather with the kit's
RobustAggregator, or the kit's StepController, and their events reach the recorder through the engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flare_doubles import WorkspaceEngine
from nvflare.apis.client import Client
from nvflare.apis.dxo import DXO, DataKind, MetaKey
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey, ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import ReservedHeaderKey, Shareable
from nvflare.apis.workspace import Workspace
from nvflare.app_common.abstract.model import make_model_learnable
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType
from nvflare.app_common.workflows.scatter_and_gather import ScatterAndGather

from fedhealth import constants as C
from fedhealth.aggregators.robust_aggregator import RobustAggregator
from fedhealth.reports.run_report import build_report
from fedhealth.reports.site_report import participation
from fedhealth.widgets.late_results import IGNORED
from fedhealth.widgets.run_recorder import RunRecorder
from fedhealth.workflows.step_controller import StepController
from fedhealth.workflows.tree_model_collector import TreeModelCollector

JOB_ID = "job-late"
SITES = ("cleveland", "hungary", "switzerland", "va_long_beach")
SLOW = "va_long_beach"
ROUNDS = 3
LATE_ROUND, ARRIVES_IN = 1, 2  # the slow site's round-1 result comes while round 2 runs


class _Bus(WorkspaceEngine):
    """The engine: a real workspace, and every event delivered to the job's components."""

    def __init__(self, workspace: Workspace, components: list) -> None:
        super().__init__(workspace)
        self.components = components

    def fire_event(self, event_type: str, fl_ctx: FLContext) -> None:
        super().fire_event(event_type, fl_ctx)
        for component in self.components:
            component.handle_event(event_type, fl_ctx)


def _job(tmp_path: Path) -> tuple[FLContext, RunRecorder, RobustAggregator, ScatterAndGather]:
    for folder in ("startup", "local"):
        (tmp_path / folder).mkdir()
    workspace = Workspace(str(tmp_path), site_name="server")
    Path(workspace.get_run_dir(JOB_ID)).mkdir(parents=True)
    recorder, aggregator = RunRecorder(), RobustAggregator(max_norm_ratio=None)
    sag = ScatterAndGather(min_clients=3, num_rounds=ROUNDS, wait_time_after_min_received=30)
    sag.aggregator = aggregator
    sag._phase = AppConstants.PHASE_TRAIN
    fl_ctx = FLContext()
    fl_ctx.set_prop(ReservedKey.ENGINE, _Bus(workspace, [recorder, aggregator]), private=True, sticky=True)
    fl_ctx.set_prop(ReservedKey.RUN_NUM, JOB_ID, private=False, sticky=True)
    model = make_model_learnable({"w": np.zeros(3, dtype="float32")}, {})
    fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, model, private=True, sticky=True)
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    aggregator.handle_event(EventType.START_RUN, fl_ctx)
    return fl_ctx, recorder, aggregator, sag


def _result(site: str, rnd: int) -> Shareable:
    """A site's train result as the server runner hands it on: headers, peer props, the round cookie."""
    dxo = DXO(DataKind.WEIGHTS, data={"w": np.full(3, 0.1, dtype="float32")})
    dxo.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, 10)
    dxo.set_meta_prop(C.META_SITE_METRICS, {"round": rnd, "train_loss": 0.5, "n_test": 10})
    result = dxo.to_shareable()
    result.set_header(ReservedHeaderKey.TASK_NAME, C.TASK_TRAIN)
    result.set_header(ReservedHeaderKey.TASK_ID, f"{site}-{rnd}")
    result.set_peer_props({ReservedKey.IDENTITY_NAME: site})
    result.add_cookie(AppConstants.CONTRIBUTION_ROUND, rnd)
    return result


def _submit(fl_ctx: FLContext, recorder: RunRecorder, workflow, result: Shareable, *, late: bool) -> None:
    """One submission, as the server runner and FLARE's WFCommServer process it."""
    fl_ctx.set_prop(FLContextKey.TASK_RESULT, result, private=True, sticky=False)
    recorder.handle_event(EventType.BEFORE_PROCESS_SUBMISSION, fl_ctx)
    site = result.get_peer_prop(ReservedKey.IDENTITY_NAME, None)
    if not late:  # the task is open: ScatterAndGather's result_received_cb
        workflow._accept_train_result(client_name=site, result=result, fl_ctx=fl_ctx)
        return
    engine = fl_ctx.get_engine()
    engine.fire_event(EventType.BEFORE_PROCESS_RESULT_OF_UNKNOWN_TASK, fl_ctx)
    task_id = result.get_header(ReservedHeaderKey.TASK_ID)
    workflow.process_result_of_unknown_task(Client(site, None), C.TASK_TRAIN, task_id, result, fl_ctx)
    engine.fire_event(EventType.AFTER_PROCESS_RESULT_OF_UNKNOWN_TASK, fl_ctx)


def _round(fl_ctx: FLContext, recorder: RunRecorder, sag: ScatterAndGather, rnd: int) -> None:
    sag._current_round = rnd
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, rnd, private=True, sticky=True)
    recorder.handle_event(AppEventType.ROUND_STARTED, fl_ctx)


def test_a_late_train_result_is_dropped_recorded_with_both_rounds_and_not_counted(tmp_path: Path) -> None:
    fl_ctx, recorder, aggregator, sag = _job(tmp_path)
    for rnd in range(ROUNDS):
        _round(fl_ctx, recorder, sag, rnd)
        if rnd == ARRIVES_IN:
            _submit(fl_ctx, recorder, sag, _result(SLOW, LATE_ROUND), late=True)
        for site in SITES:
            if not (site == SLOW and rnd == LATE_ROUND):
                _submit(fl_ctx, recorder, sag, _result(site, rnd), late=False)
        aggregator.aggregate(fl_ctx)
        recorder.handle_event(AppEventType.ROUND_DONE, fl_ctx)
    recorder.handle_event(EventType.END_RUN, fl_ctx)

    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert record["late_results"] == [
        {
            "site": SLOW,
            "task": C.TASK_TRAIN,
            "round": LATE_ROUND,
            "during_round": ARRIVES_IN,
            "used": False,
            "reason": f"It was trained for round {LATE_ROUND}, not the current {ARRIVES_IN}.",
        }
    ]
    # The aggregator's refusal is the late result's reason, not a rejection of the site's round-2 update.
    assert record["rejected_updates"] == []
    assert [r["site"] for r in aggregator.rejections] == [SLOW]
    assert recorder.progress()["late_results"] == record["late_results"]
    rows = participation(record)
    assert rows[SLOW] == {
        "rounds": ROUNDS - 1,
        "rate": pytest.approx((ROUNDS - 1) / ROUNDS),
        "missed_rounds": [],
        "late_rounds": [LATE_ROUND],
        "rejected_rounds": [],
    }
    assert all(rows[s]["rounds"] == ROUNDS for s in SITES if s != SLOW)
    report = build_report("heart_fedavg", record, {})
    assert report["participation"][SLOW]["late_rounds"] == [LATE_ROUND]


def test_a_late_result_the_aggregator_still_takes_counts_for_its_round(tmp_path: Path) -> None:
    """Closed task, round not yet aggregated: ScatterAndGather hands it to the aggregator, which takes it."""
    fl_ctx, recorder, aggregator, sag = _job(tmp_path)
    _round(fl_ctx, recorder, sag, 0)
    for site in SITES[:3]:
        _submit(fl_ctx, recorder, sag, _result(site, 0), late=False)
    _submit(fl_ctx, recorder, sag, _result(SLOW, 0), late=True)
    aggregator.aggregate(fl_ctx)
    recorder.handle_event(AppEventType.ROUND_DONE, fl_ctx)
    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    (late,) = record["late_results"]
    assert late == {
        "site": SLOW,
        "task": C.TASK_TRAIN,
        "round": 0,
        "during_round": 0,
        "used": True,
        "reason": "",
    }
    assert participation(record)[SLOW]["rounds"] == 1 and participation(record)[SLOW]["late_rounds"] == []


def test_a_kit_workflow_ignores_a_late_result_and_the_record_says_so(tmp_path: Path) -> None:
    fl_ctx, recorder, _, _ = _job(tmp_path)
    assert issubclass(TreeModelCollector, StepController)
    _round(fl_ctx, recorder, ScatterAndGather(min_clients=1), 3)
    workflow = TreeModelCollector(min_clients=2)  # a StepController, as SecAgg+, clustered FL, alignment
    result = _result(SLOW, 2)
    result.add_cookie(AppConstants.CONTRIBUTION_ROUND, None)  # the kit's workflows set no such cookie
    _submit(fl_ctx, recorder, workflow, result, late=True)
    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert record["late_results"] == [
        {"site": SLOW, "task": C.TASK_TRAIN, "round": 2, "during_round": 3, "used": False, "reason": IGNORED}
    ]
