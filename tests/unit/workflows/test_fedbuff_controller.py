"""FedBuffController over a scripted federation: fast sites, a slow one, a timeout, a failure.

FLARE's ``send`` is replaced by :class:`Federation`, which answers each task the way the server
runner would hand a site's result over: ``BEFORE_PROCESS_SUBMISSION`` (the RunRecorder's hook),
then the task's ``result_received_cb``. Everything else is real: the controller, its FLARE-free
core, the scheduled shareable generator, the RunRecorder and the run report built from its record.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flare_doubles import WorkspaceEngine
from nvflare.apis.client import Client
from nvflare.apis.controller_spec import ClientTask, Task, TaskCompletionStatus
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey, ReservedKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import ReservedHeaderKey, Shareable, make_reply
from nvflare.apis.signal import Signal
from nvflare.apis.workspace import Workspace
from nvflare.app_common.abstract.model import make_model_learnable
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType

from fedhealth import constants as C
from fedhealth.reports.run_report import build_report, to_markdown
from fedhealth.shareables.scheduled_generator import ScheduledShareableGenerator
from fedhealth.widgets.run_recorder import RunRecorder
from fedhealth.workflows.fedbuff_controller import FedBuffController

JOB_ID = "job-fedbuff"
SITES = ("a", "b", "c", "slow")
SIZES = {"a": 100, "b": 100, "c": 200, "slow": 100}
DELTA = {"a": 1.0, "b": 2.0, "c": 3.0, "slow": -4.0}  # each site adds this to every weight it gets
BAD = [
    ({"num_versions": 0}, "num_versions and min_clients must be at least 1"),
    ({"buffer_size": 0}, "buffer_size must be a whole number of at least 1"),
    ({"train_timeout": -1}, "train_timeout and max_seconds 0 or more"),
    ({"staleness_exponent": -1}, "staleness_exponent must be 0 or more"),
]


class Persistor:
    def __init__(self) -> None:
        self.saved: list[np.ndarray] = []

    def load(self, fl_ctx: FLContext):
        return make_model_learnable({"w": np.zeros(2, dtype=np.float32)}, {})

    def save(self, learnable, fl_ctx: FLContext) -> None:
        self.saved.append(np.array(learnable["weights"]["w"]))


class Engine(WorkspaceEngine):
    """The workspace engine with components, clients, and listeners that see every event."""

    def __init__(self, workspace: Workspace, components: dict, listeners: list) -> None:
        super().__init__(workspace)
        self.components, self.listeners = components, listeners

    def get_component(self, name: str):
        return self.components.get(name)

    def get_clients(self) -> list[Client]:
        return [Client(s, None) for s in SITES]

    def fire_event(self, event_type: str, fl_ctx: FLContext) -> None:
        super().fire_event(event_type, fl_ctx)
        for listener in self.listeners:
            listener.handle_event(event_type, fl_ctx)


class Federation:
    """Stands in for FLARE's ``send``: each site answers at once, except the ones told otherwise.

    ``lag``: the slow site answers a task only after this many other results arrived since it got
    it; ``silent``: sites whose first task ends in a timeout (their result then comes late);
    ``failing``: sites whose every task fails with an error reply; ``poison``: sites that send NaN;
    ``mute``: sites that never answer; ``dead``: sites whose first task ends with the site reported
    dead; ``junk``: sites whose results hold no DXO.
    """

    def __init__(self, engine: Engine, *, lag=0, silent=(), failing=(), poison=(), mute=(), dead=(), junk=()):
        self.engine, self.lag, self.silent, self.failing = engine, lag, set(silent), set(failing)
        self.poison, self.mute, self.dead, self.junk = set(poison), set(mute), set(dead), set(junk)
        self.sent: list[tuple[str, int]] = []
        self.held: list[tuple[Task, int]] = []  # slow site's tasks and the results count when sent
        self.answered = 0
        self.timed_out: list[ClientTask] = []

    def send(self, task: Task, fl_ctx: FLContext, targets, send_order=None, task_assignment_timeout=0):
        site = targets[0]
        self.sent.append((site, task.data.get_header(AppConstants.CURRENT_ROUND)))
        if site in self.silent or site in self.dead:
            status = TaskCompletionStatus.CLIENT_DEAD if site in self.dead else TaskCompletionStatus.TIMEOUT
            self.silent.discard(site)
            self.dead.discard(site)
            ct = ClientTask(Client(site, None), task)
            task.client_tasks.append(ct)
            task.completion_status = status
            self.timed_out.append(ct)
            task.task_done_cb(task=task, fl_ctx=fl_ctx)
        elif site in self.mute:
            pass
        elif site == "slow" and self.lag:
            self.held.append((task, self.answered))
        else:
            self.answer(task, site, fl_ctx)
        for held in [h for h in self.held if self.answered - h[1] >= self.lag]:
            self.held.remove(held)
            self.answer(held[0], "slow", fl_ctx)

    def answer(self, task: Task, site: str, fl_ctx: FLContext) -> None:
        ct = ClientTask(Client(site, None), task)
        task.client_tasks.append(ct)
        self.answered += 1
        ct.result = self.result(task.data, site)
        self.submit(ct, fl_ctx)
        task.result_received_cb(client_task=ct, fl_ctx=fl_ctx)

    def result(self, data: Shareable, site: str) -> Shareable:
        if site in self.failing:
            reply = make_reply(ReturnCode.EXECUTION_EXCEPTION)
            reply.set_header(C.HEADER_ERROR, f"site {site} failed task 'train': no data")
            return reply
        if site in self.junk:
            return make_reply(ReturnCode.OK)
        sent = from_shareable(data)
        step = float("nan") if site in self.poison else DELTA[site]
        out = DXO(DataKind.WEIGHTS, data={k: v + step for k, v in sent.data.items()})
        out.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, SIZES[site])
        rnd = data.get_header(AppConstants.CURRENT_ROUND)
        metrics = {
            "round": rnd,
            "n_test": 10,
            "global_accuracy": 0.5,
            "lr": sent.get_meta_prop(C.META_LEARNING_RATE),
        }
        out.set_meta_prop(C.META_SITE_METRICS, metrics)
        return out.to_shareable()

    def submit(self, ct: ClientTask, fl_ctx: FLContext) -> None:
        """What the server runner does before the controller sees a result."""
        ct.result.set_header(ReservedHeaderKey.TASK_NAME, C.TASK_TRAIN)
        ct.result.set_peer_props({ReservedKey.IDENTITY_NAME: ct.client.name})
        fl_ctx.set_prop(FLContextKey.TASK_RESULT, ct.result, private=True, sticky=False)
        fl_ctx.set_prop(FLContextKey.TASK_ID, ct.id, private=True, sticky=False)
        self.engine.fire_event(EventType.BEFORE_PROCESS_SUBMISSION, fl_ctx)


def _run(tmp_path: Path, *, lag=0, silent=(), failing=(), poison=(), mute=(), dead=(), junk=(), **kwargs):
    (tmp_path / "startup").mkdir()
    (tmp_path / "local").mkdir()
    workspace = Workspace(str(tmp_path), site_name="server")
    Path(workspace.get_run_dir(JOB_ID)).mkdir(parents=True)
    args = {"num_versions": 6, "buffer_size": 2, "min_clients": 4, "staleness_exponent": 0.5, **kwargs}
    controller = FedBuffController(**args)
    recorder = RunRecorder()
    persistor = Persistor()
    generator = ScheduledShareableGenerator(lr=0.1, gamma=0.5)
    engine = Engine(
        workspace, {"persistor": persistor, "shareable_generator": generator}, [recorder, controller]
    )
    fl_ctx = FLContext()
    fl_ctx.set_prop(ReservedKey.ENGINE, engine, private=True, sticky=True)
    fl_ctx.set_prop(ReservedKey.RUN_NUM, JOB_ID, private=False, sticky=True)
    federation = Federation(
        engine, lag=lag, silent=silent, failing=failing, poison=poison, mute=mute, dead=dead, junk=junk
    )
    controller.send = federation.send
    controller.cancel_all_tasks = lambda *a, **k: None
    engine.fire_event(EventType.START_RUN, fl_ctx)
    controller.initialize(fl_ctx)
    controller.control_flow(Signal(), fl_ctx)
    engine.fire_event(EventType.END_RUN, fl_ctx)
    record = json.loads((Path(workspace.get_run_dir(JOB_ID)) / C.RUN_RECORD_FILE).read_text())
    return controller, federation, persistor, engine, record


def test_fresh_sites_make_each_version_as_fedavg_of_the_buffer(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, num_versions=2)
    # all four start from version 0 and answer in order: a and b make version 1 (+1 and +2, equal
    # weights: +1.5); c and slow, one version stale, make version 2
    versions = record["asynchronous"]["versions"]
    assert [[(u["site"], u["start_version"], u["staleness"]) for u in v["updates"]] for v in versions] == [
        [("a", 0, 0), ("b", 0, 0)],
        [("c", 0, 1), ("slow", 0, 1)],
    ]
    w = 1 / np.sqrt(2)  # (1 + 1) ** -0.5
    v2 = 1.5 + (200 * w * 3.0 + 100 * w * -4.0) / 300
    np.testing.assert_allclose([p[0] for p in persistor.saved], [1.5, v2], rtol=1e-6)
    assert record["completed_rounds"] == [0, 1]
    assert engine.events.count(AppEventType.ROUND_STARTED) == 2  # versions 0 and 1 (2 is the last)


def test_a_slow_site_gets_stale_and_weighted_down_and_the_report_says_so(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, lag=4, num_versions=8)
    versions = record["asynchronous"]["versions"]
    assert len(versions) == 8 and record["completed_rounds"] == list(range(8))
    slow = [u for v in versions for u in v["updates"] if u["site"] == "slow"]
    fast = [u for v in versions for u in v["updates"] if u["site"] != "slow"]
    assert len(slow) == 2 and len(fast) == 14
    assert [u["staleness"] for u in slow] == [3, 3]
    assert all(u["staleness_weight"] == pytest.approx(0.5) for u in slow)  # (1 + 3) ** -0.5
    assert max(u["staleness"] for u in fast) == 2
    # every site started from version 0; the slow one again only from version 4
    assert [v for s, v in federation.sent if s == "slow"] == [0, 4]
    report = build_report("heart_fedbuff", record, {})
    rows = report["asynchronous"]["sites"]
    assert (rows["slow"]["updates"], rows["slow"]["mean_staleness"], rows["slow"]["max_staleness"]) == (
        2,
        3,
        3,
    )
    assert rows["a"]["updates"] + rows["b"]["updates"] + rows["c"]["updates"] == 14
    assert report["participation"]["slow"]["rounds"] == 2  # trained from versions 0 and 4
    assert report["participation"]["a"]["rounds"] > report["participation"]["slow"]["rounds"]
    text = to_markdown(report)
    assert "## Asynchronous aggregation (FedBuff)" in text
    assert "| slow | 2 | 12% | 3.0 | 3 | 0.500 | 0 | 0 | 0 |" in text
    assert "8 versions (asynchronous, FedBuff)" in text
    assert "- slow: trained from 2 of 8 versions (25%)\n" in text


def test_the_learning_rate_follows_the_version(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, num_versions=3)
    by_round = {r["round"]: r["sites"] for r in record["rounds"]}
    for version, sites in by_round.items():
        assert [m["lr"] for m in sites.values()] == pytest.approx([0.1 * 0.5**version] * len(sites))


def test_too_stale_results_are_dropped_and_reported(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, lag=4, num_versions=8, max_staleness=2)
    info = record["asynchronous"]
    assert [d["site"] for d in info["dropped"]] == ["slow", "slow"]
    assert [(d["start_version"], d["staleness"]) for d in info["dropped"]] == [(0, 3), (3, 4)]
    assert all(u["site"] != "slow" for v in info["versions"] for u in v["updates"])
    reasons = [r for r in record["rejected_updates"] if r["site"] == "slow"]
    assert [r["round"] for r in reasons] == [0, 3]
    assert reasons[0]["reason"] == (
        "The update of site 'slow' (trained from version 0) arrived at version 3: staleness 3 is above "
        "max_staleness 2; dropped."
    )
    report = build_report("heart_fedbuff", record, {})
    assert report["participation"]["slow"]["rate"] == 0.0
    assert report["participation"]["slow"]["rejected_rounds"] == [0, 3]
    text = to_markdown(report)
    assert "- slow: trained from 2 of 8 versions (25%); 2 of those updates not used" in text


def test_a_timed_out_task_is_sent_again_and_its_late_result_refused(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, silent={"b"}, num_versions=3)
    info = record["asynchronous"]
    assert info["timeouts"] == [{"site": "b", "start_version": 0, "status": "timeout"}]
    assert [s for s, _ in federation.sent].count("b") >= 2  # sent again after the timeout
    assert len(info["versions"]) == 3
    # the late result of the timed-out task arrives: counted and announced, not used
    late = federation.timed_out[0]
    late.result = federation.result(late.task.data, "b")
    fl_ctx = FLContext()
    fl_ctx.set_prop(ReservedKey.ENGINE, engine, private=True, sticky=True)
    federation.submit(late, fl_ctx)
    controller._handle(controller._inbox.get_nowait(), fl_ctx)
    assert controller.record["late"] == [{"site": "b", "start_version": 0}]
    written = json.loads((Path(engine.get_workspace().get_run_dir(JOB_ID)) / C.RUN_RECORD_FILE).read_text())
    assert [r["reason"] for r in written["rejected_updates"]] == [
        "The result of site 'b' (trained from version 0) arrived after its task had ended (timeout, "
        "train_timeout 0 s); not used."
    ]
    assert written["rejected_updates"][0]["round"] == 0


def test_a_site_reported_dead_is_sent_again_only_after_a_pause(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, dead={"b"}, num_versions=3)
    assert record["asynchronous"]["timeouts"] == [{"site": "b", "start_version": 0, "status": "client_dead"}]
    assert [s for s, _ in federation.sent].count("b") == 1  # the others made 3 versions within the pause
    assert controller._dead == {"b": 1} and controller._retry["b"] > 0


def test_a_result_without_a_model_is_refused_by_site(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, junk={"a"}, num_versions=2)
    refused = [r for r in record["rejected_updates"] if r["site"] == "a"]
    assert refused and refused[0]["reason"].startswith(
        "The result of site 'a' (trained from version 0) is refused: "
    )
    assert len(record["asynchronous"]["versions"]) == 2


def test_a_failing_site_gets_no_more_tasks_and_the_others_go_on(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, failing={"c"}, num_versions=4)
    assert [s for s, _ in federation.sent].count("c") == 1
    assert record["asynchronous"]["failed_sites"] == {"c": "site c failed task 'train': no data"}
    assert len(record["asynchronous"]["versions"]) == 4
    assert [f["site"] for f in record["failures"]] == ["c"]


def test_a_nan_update_is_refused_by_site_and_the_site_keeps_training(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, poison={"c"}, num_versions=4)
    refused = [r for r in record["rejected_updates"] if r["site"] == "c"]
    assert record["asynchronous"]["refused"] == len(refused) >= 2
    assert refused[0]["reason"] == (
        "The update of site 'c' (trained from version 0) is refused: Parameter w has 2 non-finite "
        "value(s) (NaN or Inf) out of 2."
    )
    assert all(u["site"] != "c" for v in record["asynchronous"]["versions"] for u in v["updates"])
    assert np.isfinite(persistor.saved).all() and len(persistor.saved) == 4


def test_the_time_budget_ends_the_workflow_with_the_last_version(tmp_path):
    controller, federation, persistor, engine, record = _run(tmp_path, mute=set(SITES), max_seconds=0.3)
    info = record["asynchronous"]
    assert info["versions"] == [] and persistor.saved == []
    assert info["stopped"] == "time budget of 0.3 s spent at version 0"
    assert info["unfinished"] == dict.fromkeys(SITES, 0)


@pytest.mark.parametrize(("kwargs", "message"), BAD)
def test_bad_settings_are_refused(kwargs, message):
    args = {"num_versions": 5, "buffer_size": 2, "min_clients": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        FedBuffController(**args)
