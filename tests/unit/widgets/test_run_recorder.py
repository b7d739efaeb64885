"""RunRecorder with FLARE's own FLContext, Shareable and DXO: what lands in fedhealth_run.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flare_doubles import WorkspaceEngine
from nvflare.apis.client import Client
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey, ReservedKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import ReservedHeaderKey, make_reply
from nvflare.apis.signal import Signal
from nvflare.apis.workspace import Workspace
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType

from fedhealth import constants as C
from fedhealth.reports.run_record import NEVER_STARTED
from fedhealth.widgets.run_recorder import RunRecorder

JOB_ID = "job-7"
# (site, train loss per round): Switzerland drifts away from the others from round 2 on.
LOSSES = {
    "cleveland": [0.60, 0.55, 0.52, 0.50, 0.49, 0.48],
    "hungary": [0.62, 0.56, 0.53, 0.51, 0.50, 0.49],
    "switzerland": [0.61, 0.57, 0.55, 0.70, 0.90, 1.20],
}
BAD_ARGS = [
    ({"primary_metric": "f1"}, "primary_metric"),
    ({"threshold": 1.5}, "threshold"),
    ({"flag_sd": 0}, "flag_sd"),
    (
        {"finding_thresholds": {"Mass": 0}},
        r"finding_thresholds\['Mass'\] must be a number strictly between 0 and 1",
    ),
    (
        {"finding_thresholds": ["Mass", 0.8]},
        "finding_thresholds must map finding names to thresholds, got a list",
    ),
]


def _ctx(tmp_path: Path) -> FLContext:
    (tmp_path / "startup").mkdir()
    (tmp_path / "local").mkdir()
    workspace = Workspace(str(tmp_path), site_name="server")
    Path(workspace.get_run_dir(JOB_ID)).mkdir(parents=True)
    fl_ctx = FLContext()
    fl_ctx.set_prop(ReservedKey.ENGINE, WorkspaceEngine(workspace), private=True, sticky=True)
    fl_ctx.set_prop(ReservedKey.RUN_NUM, JOB_ID, private=False, sticky=True)
    return fl_ctx


def _submit(recorder: RunRecorder, fl_ctx: FLContext, site: str, rnd: int, loss: float | None) -> None:
    if loss is None:
        result = make_reply(ReturnCode.EXECUTION_EXCEPTION)
        result.set_header(
            C.HEADER_ERROR, f"site {site} failed task 'train': data file heart_disease/train.csv"
        )
    else:
        dxo = DXO(DataKind.WEIGHTS, data={})
        dxo.set_meta_prop(
            C.META_SITE_METRICS, {"round": rnd, "train_loss": loss, "n_test": 10, "global_accuracy": 0.8}
        )
        result = dxo.to_shareable()
    result.set_header(ReservedHeaderKey.TASK_NAME, C.TASK_TRAIN)
    result.set_peer_props({ReservedKey.IDENTITY_NAME: site})
    fl_ctx.set_prop(FLContextKey.TASK_RESULT, result, private=True, sticky=False)
    recorder.handle_event(EventType.BEFORE_PROCESS_SUBMISSION, fl_ctx)


@pytest.mark.parametrize(("args", "word"), BAD_ARGS)
def test_bad_gate_settings_are_refused(args: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        RunRecorder(**args)


def test_record_has_rounds_gate_failures_rejections_and_divergence(tmp_path: Path) -> None:
    fl_ctx = _ctx(tmp_path)
    recorder = RunRecorder(primary_metric="auc", threshold=0.7)
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    for rnd in range(6):
        fl_ctx.set_prop(AppConstants.CURRENT_ROUND, rnd, private=True, sticky=True)
        fl_ctx.set_prop(AppConstants.NUM_ROUNDS, 6, private=True, sticky=True)
        recorder.handle_event(AppEventType.ROUND_STARTED, fl_ctx)
        for site, losses in LOSSES.items():
            _submit(recorder, fl_ctx, site, rnd, losses[rnd])
        if rnd == 4:
            fl_ctx.set_prop(C.PROP_REJECTION, {"site": "hungary", "round": 4, "reason": "NaN"}, private=True)
            recorder.handle_event(C.EVENT_UPDATE_REJECTED, fl_ctx)
        recorder.handle_event(AppEventType.ROUND_DONE, fl_ctx)
    _submit(recorder, fl_ctx, "va_long_beach", 5, None)
    recorder.handle_event(EventType.END_RUN, fl_ctx)

    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert record["status"] == "finished" and record["num_rounds"] == 6
    assert record["gate"] == {"primary_metric": "auc", "threshold": 0.7, "flag_sd": 2.0}
    assert [sorted(r["sites"]) for r in record["rounds"]] == [sorted(LOSSES)] * 6
    assert record["rounds"][5]["sites"]["switzerland"]["train_loss"] == 1.20
    assert record["rejected_updates"] == [{"site": "hungary", "round": 4, "reason": "NaN"}]
    assert record["failures"][0]["site"] == "va_long_beach" and "train.csv" in record["failures"][0]["reason"]
    assert record["divergence"]["diverging"] is True
    assert sorted(record["sites"]) == sorted([*LOSSES, "va_long_beach"])
    assert "switzerland" in record["divergence"]["message"]
    progress = recorder.progress()
    assert progress["current_round"] == 5 and progress["sites_reported"] == sorted(LOSSES)
    assert progress["global_accuracy"] == pytest.approx(0.8)


def test_dp_releases_of_any_task_are_recorded(tmp_path: Path) -> None:
    fl_ctx = _ctx(tmp_path)
    recorder = RunRecorder()
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    stamp = {"filter": "DPUpdate", "round": 0, "epsilon": 0.9, "delta": 1e-5, "releases": 1}
    exclude = {"filter": "ExcludeLayers", "layers": ["net.bias"]}
    for task, stamps in ((C.TASK_TRAIN, [exclude, stamp]), (C.TASK_SUBMIT_MODEL, [{**stamp, "releases": 2}])):
        dxo = DXO(DataKind.WEIGHTS, data={}, meta={C.META_PRIVACY: stamps})
        dxo.set_meta_prop(C.META_SITE_METRICS, {"round": 0, "train_loss": 0.5})
        result = dxo.to_shareable()
        result.set_header(ReservedHeaderKey.TASK_NAME, task)
        result.set_peer_props({ReservedKey.IDENTITY_NAME: "switzerland"})
        fl_ctx.set_prop(FLContextKey.TASK_RESULT, result, private=True, sticky=False)
        recorder.handle_event(EventType.BEFORE_PROCESS_SUBMISSION, fl_ctx)
    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert record["update_privacy"] == [
        {"site": "switzerland", "task": "train", **stamp},
        {"site": "switzerland", "task": "submit_model", **stamp, "releases": 2},
    ]
    assert record["rounds"][0]["sites"]["switzerland"]["train_loss"] == 0.5


class _JobEngine(WorkspaceEngine):
    """The server job's engine: its workspace and the job's participants ({token: Client})."""

    def __init__(self, workspace: Workspace, sites: list[str]) -> None:
        super().__init__(workspace)
        self.clients = {f"token-{name}": Client(name, f"token-{name}") for name in sites}

    def get_participating_clients(self) -> dict[str, Client]:
        return self.clients


def _job_ctx(tmp_path: Path, sites: list[str]) -> tuple[FLContext, Signal]:
    fl_ctx = _ctx(tmp_path)
    workspace = fl_ctx.get_engine().get_workspace()
    fl_ctx.set_prop(ReservedKey.ENGINE, _JobEngine(workspace, sites), private=True, sticky=True)
    abort = Signal()
    fl_ctx.set_prop(ReservedKey.RUN_ABORT_SIGNAL, abort, private=True, sticky=True)
    return fl_ctx, abort


def test_a_site_whose_job_never_started_is_a_failure_and_the_run_aborted(tmp_path: Path) -> None:
    fl_ctx, abort = _job_ctx(tmp_path, ["site-1", "site-2"])
    recorder = RunRecorder()
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    fl_ctx.set_prop(AppConstants.CURRENT_ROUND, 0, private=True, sticky=True)
    recorder.handle_event(AppEventType.ROUND_STARTED, fl_ctx)
    peer = FLContext()
    peer.set_prop(ReservedKey.IDENTITY_NAME, "site-1", private=False)
    fl_ctx.set_peer_context(peer)
    recorder.handle_event(EventType.BEFORE_PROCESS_TASK_REQUEST, fl_ctx)
    _submit(recorder, fl_ctx, "site-1", 0, 0.5)
    abort.trigger(True)  # FLARE's job runner stops the server job when a client job fails
    recorder.handle_event(EventType.END_RUN, fl_ctx)

    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert record["status"] == "aborted" and record["abort_round"] == 0
    assert "a site's job failed" in record["abort_reason"]
    assert record["asked"] == ["site-1"] and record["tasks"] == [C.TASK_TRAIN]
    assert record["failures"] == [
        {"site": "site-2", "task": None, "round": 0, "reason": NEVER_STARTED.format(job_id=JOB_ID)}
    ]
    assert f"{JOB_ID}/error_log.txt" in record["failures"][0]["reason"]


def test_a_run_that_ends_normally_is_finished_without_failures(tmp_path: Path) -> None:
    fl_ctx = _ctx(tmp_path)
    workspace = fl_ctx.get_engine().get_workspace()
    fl_ctx.set_prop(ReservedKey.ENGINE, _JobEngine(workspace, ["site-1"]), private=True, sticky=True)
    fl_ctx.set_prop(ReservedKey.RUN_ABORT_SIGNAL, Signal(), private=True, sticky=True)
    recorder = RunRecorder()
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    peer = FLContext()
    peer.set_prop(ReservedKey.IDENTITY_NAME, "site-1", private=False)
    fl_ctx.set_peer_context(peer)
    recorder.handle_event(EventType.BEFORE_PROCESS_TASK_REQUEST, fl_ctx)
    recorder.handle_event(EventType.END_RUN, fl_ctx)
    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert (record["status"], record["failures"]) == ("finished", [])


def test_an_abort_signal_after_a_normal_run_leaves_it_finished(tmp_path: Path) -> None:
    """FLARE's simulator fires the abort signal when a run ends: every site asked, none failed."""
    fl_ctx, abort = _job_ctx(tmp_path, ["site-1"])
    recorder = RunRecorder()
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    peer = FLContext()
    peer.set_prop(ReservedKey.IDENTITY_NAME, "site-1", private=False)
    fl_ctx.set_peer_context(peer)
    recorder.handle_event(EventType.BEFORE_PROCESS_TASK_REQUEST, fl_ctx)
    abort.trigger(True)
    recorder.handle_event(EventType.END_RUN, fl_ctx)
    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert record["status"] == "finished" and record["failures"] == []


def test_a_server_that_stopped_on_its_own_error_keeps_its_reason_and_blames_no_site(tmp_path: Path) -> None:
    fl_ctx, abort = _job_ctx(tmp_path, ["site-1", "site-2"])
    recorder = RunRecorder()
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    reason = "TenSEAL context server_context.tenseal is missing"
    fl_ctx.set_prop(FLContextKey.EVENT_DATA, reason, sticky=False)
    recorder.handle_event(EventType.FATAL_SYSTEM_ERROR, fl_ctx)
    abort.trigger(True)
    recorder.handle_event(EventType.END_RUN, fl_ctx)
    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert record["status"] == "aborted" and record["failures"] == []
    assert record["abort_reason"] == reason


def test_finding_thresholds_reach_the_record_only_when_set(tmp_path: Path) -> None:
    fl_ctx = _ctx(tmp_path)
    recorder = RunRecorder(threshold=0.8, finding_thresholds={"Hernia": 0.6, "Mass": 0.9})
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    recorder.handle_event(EventType.END_RUN, fl_ctx)
    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert record["gate"] == {
        "primary_metric": "auc",
        "threshold": 0.8,
        "flag_sd": 2.0,
        "finding_thresholds": {"Hernia": 0.6, "Mass": 0.9},
    }


# round -> (sampled, the sampled sites that sent a result)
DRAWS = {
    0: (["cleveland", "hungary", "switzerland"], ["cleveland", "hungary", "switzerland"]),
    1: (["cleveland", "hungary", "va_long_beach"], ["cleveland", "va_long_beach"]),  # hungary missed
    2: (["hungary", "switzerland", "va_long_beach"], ["hungary", "switzerland", "va_long_beach"]),
}


def test_sampled_rounds_and_client_dp_ledger_are_recorded(tmp_path: Path) -> None:
    fl_ctx = _ctx(tmp_path)
    recorder = RunRecorder()
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    sites = sorted({s for sampled, _ in DRAWS.values() for s in sampled})
    for rnd, (sampled, sent) in DRAWS.items():
        fl_ctx.set_prop(AppConstants.CURRENT_ROUND, rnd, private=True, sticky=True)
        recorder.handle_event(AppEventType.ROUND_STARTED, fl_ctx)
        draw = {"round": rnd, "sampled": sampled, "connected": sites, "rate": 0.75, "short": False}
        draw.update(k=3, n=4, planned_rate=0.75, mode="fixed", seeded=True, min_responses=3)
        fl_ctx.set_prop(C.PROP_SITES_SAMPLED, draw, private=True, sticky=False)
        recorder.handle_event(C.EVENT_SITES_SAMPLED, fl_ctx)
        assert recorder.progress()["sites_sampled"] == sampled
        for site in sent:
            _submit(recorder, fl_ctx, site, rnd, 0.5)
        entry = {"round": rnd, "epsilon": 1.0 + rnd, "sample_rate": 0.75, "planned_sample_rate": 0.75}
        fl_ctx.set_prop(C.PROP_CLIENT_DP_ROUND, entry, private=True, sticky=False)
        recorder.handle_event(C.EVENT_CLIENT_DP_ROUND, fl_ctx)
        recorder.handle_event(AppEventType.ROUND_DONE, fl_ctx)

    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    sampling = record["sampling"]
    assert {k: sampling[k] for k in ("mode", "k", "n", "rate", "seeded")} == {
        "mode": "fixed",
        "k": 3,
        "n": 4,
        "rate": 0.75,
        "seeded": True,
    }
    assert [(d["round"], d["sampled"]) for d in sampling["rounds"]] == [(r, s) for r, (s, _) in DRAWS.items()]
    assert [sorted(r["sites"]) for r in record["rounds"]] == [sent for _, sent in DRAWS.values()]
    assert [e["epsilon"] for e in record["client_dp"]] == [1.0, 2.0, 3.0]


def test_a_round_drawn_again_replaces_its_draw(tmp_path: Path) -> None:
    fl_ctx = _ctx(tmp_path)
    recorder = RunRecorder()
    recorder.handle_event(EventType.START_RUN, fl_ctx)
    for sampled in (["a", "b"], ["b", "c"]):  # a resumed job draws round 0 again
        draw = {"round": 0, "sampled": sampled, "connected": ["a", "b", "c"], "rate": 2 / 3}
        fl_ctx.set_prop(C.PROP_SITES_SAMPLED, draw, private=True, sticky=False)
        recorder.handle_event(C.EVENT_SITES_SAMPLED, fl_ctx)
    record = json.loads((tmp_path / JOB_ID / C.RUN_RECORD_FILE).read_text())
    assert [d["sampled"] for d in record["sampling"]["rounds"]] == [["b", "c"]]
