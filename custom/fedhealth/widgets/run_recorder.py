"""Server widget that records a run's progress: rounds, per-site metrics and failed sites.

It writes ``fedhealth_run.json`` into the server's run folder (downloaded with the job result)
after every round, and answers ``show_stats`` so an admin sees live progress: round i of N, which
sites reported, the current global validation metric and any site that failed, with its reason.
Every DP release a site's privacy scope stamped on a result (``DPUpdate``: ε, δ, noise, clip, round)
is kept under ``update_privacy``, whatever the task, so the report shows ε per site and round. A
sampling workflow's draw of each round (``fedhealth.sites_sampled``) is kept under ``sampling`` and
server-side DP-FedAvg's ledger (``fedhealth.client_dp_round``) under ``client_dp``.
A result that arrives after its task closed is kept under ``late_results``
(:mod:`fedhealth.widgets.late_results`); an aggregator's rejection of it goes there, not under
``rejected_updates`` (whose round is the round in progress, not the late result's).
An asynchronous workflow (:class:`~fedhealth.workflows.fedbuff_controller.FedBuffController`) sends
its own record (versions, staleness, dropped and late results), kept under ``asynchronous``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from nvflare.apis.dxo import from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_constant import FLContextKey, ReservedKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import ReservedHeaderKey
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType
from nvflare.widgets.info_collector import GroupInfoCollector, InfoCollector

from fedhealth.constants import (
    EVENT_ASYNC_PROGRESS,
    EVENT_CLIENT_DP_ROUND,
    EVENT_SITE_FAILED,
    EVENT_SITES_SAMPLED,
    EVENT_TREE_MODEL,
    EVENT_UPDATE_REJECTED,
    HEADER_ERROR,
    M_TRAIN_LOSS,
    META_PRIVACY,
    META_SITE_METRICS,
    PROP_ASYNC_PROGRESS,
    PROP_CLIENT_DP_ROUND,
    PROP_REJECTION,
    PROP_SITE_FAILURE,
    PROP_SITES_SAMPLED,
    PROP_TREE_MODEL,
    RUN_RECORD_FILE,
    STATS_GROUP,
    TASK_TRAIN,
)
from fedhealth.reports.fairness import loss_divergence
from fedhealth.reports.finding_gate import check_finding_thresholds
from fedhealth.reports.run_record import NEVER_STARTED, Failure, Gate, RunRecord, add_draw, new_record
from fedhealth.reports.summary import round_summary
from fedhealth.training.site_metrics import METRICS
from fedhealth.widgets.late_results import LateResults


class RunRecorder(FLComponent):
    """Keeps the run record; no patient data ever reaches it (sites send aggregates only).

    Args:
        primary_metric: the metric the deployment gate judges (``auc``, ``accuracy``,
            ``sensitivity`` or ``specificity``).
        threshold: the clinical threshold the gate applies to each site's lower 95% bound.
        flag_sd: a site is flagged when its metric is more than this many SD below the sites' mean.
        finding_thresholds: multi-label and multi-class jobs: finding (class) name -> its own
            threshold; a finding not named here gets ``threshold``. Binary jobs ignore it.
    """

    def __init__(
        self,
        *,
        primary_metric: str = "auc",
        threshold: float = 0.75,
        flag_sd: float = 2.0,
        finding_thresholds: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if primary_metric not in METRICS:
            raise ValueError(f"primary_metric must be one of {METRICS}, not {primary_metric!r}.")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
        if flag_sd <= 0:
            raise ValueError(f"flag_sd must be positive, got {flag_sd}.")
        self.gate = Gate(primary_metric=primary_metric, threshold=threshold, flag_sd=flag_sd)
        if finding_thresholds:  # checked here so a bad job config fails at start, not in the report
            self.gate["finding_thresholds"] = check_finding_thresholds(finding_thresholds)
        self._lock = threading.Lock()
        self._record: RunRecord = {}
        self._path: Path | None = None
        self._abort_signal = None
        self._late = LateResults()

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.START_RUN:
            workspace = fl_ctx.get_engine().get_workspace()
            self._path = Path(workspace.get_run_dir(fl_ctx.get_job_id())) / RUN_RECORD_FILE
            self._abort_signal = fl_ctx.get_run_abort_signal()
            with self._lock:
                self._record = new_record(fl_ctx.get_job_id(), Gate(**self.gate))
        elif event_type == AppEventType.ROUND_STARTED:
            with self._lock:
                self._record["current_round"] = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
                self._record["num_rounds"] = fl_ctx.get_prop(AppConstants.NUM_ROUNDS)
                # Wall clock of each round, from the server's own events: overhead = round - slowest site.
                stamp = {"round": self._record["current_round"], "started": time.time()}
                self._record["round_times"].append(stamp)
        elif event_type == EventType.BEFORE_PROCESS_TASK_REQUEST:
            self._on_task_request(fl_ctx)
        elif event_type == EventType.BEFORE_PROCESS_SUBMISSION:
            self._on_result(fl_ctx)
        elif event_type == AppEventType.ROUND_DONE:
            with self._lock:  # the global model of this round is saved: a resume may start after it
                self._record["completed_rounds"].append(fl_ctx.get_prop(AppConstants.CURRENT_ROUND))
                if self._record["round_times"]:
                    self._record["round_times"][-1]["done"] = time.time()
                self._record["start_round"] = fl_ctx.get_prop(AppConstants.START_ROUND)
            self._check_divergence(fl_ctx)
            self._write()
        elif event_type == EventType.BEFORE_PROCESS_RESULT_OF_UNKNOWN_TASK:
            with self._lock:
                during = self._record.get("current_round")
            self._late.start(fl_ctx, during_round=during)
        elif event_type == AppEventType.AFTER_CONTRIBUTION_ACCEPT:
            self._late.accepted(fl_ctx)
        elif event_type == EventType.AFTER_PROCESS_RESULT_OF_UNKNOWN_TASK:
            self._on_late_result(fl_ctx)
        elif event_type == EVENT_UPDATE_REJECTED:
            rejection = fl_ctx.get_prop(PROP_REJECTION)
            if not isinstance(rejection, dict):
                return
            if not self._late.rejected(fl_ctx, str(rejection.get("reason", ""))):  # else kept with it
                with self._lock:
                    self._record["rejected_updates"].append(dict(rejection))
                    self._write_locked()
        elif event_type == EVENT_SITE_FAILED:
            failure = fl_ctx.get_prop(PROP_SITE_FAILURE)
            if isinstance(failure, dict) and failure.get("site"):
                with self._lock:
                    self._record["failures"].append(
                        Failure(
                            site=str(failure["site"]),
                            task=failure.get("task"),
                            round=self._record["current_round"],
                            reason=str(failure.get("reason", "")),
                        )
                    )
                    self._write_locked()
        elif event_type == EVENT_SITES_SAMPLED:  # a sampling workflow chose this round's sites
            draw = fl_ctx.get_prop(PROP_SITES_SAMPLED)
            if isinstance(draw, dict) and draw.get("round") is not None:
                with self._lock:
                    add_draw(self._record, draw)
                    self._write_locked()
        elif event_type == EVENT_CLIENT_DP_ROUND:  # DP-FedAvg's ledger entry of a released round
            entry = fl_ctx.get_prop(PROP_CLIENT_DP_ROUND)
            if isinstance(entry, dict):
                with self._lock:
                    self._record.setdefault("client_dp", []).append(dict(entry))
                    self._write_locked()
        elif event_type == EVENT_ASYNC_PROGRESS:
            progress = fl_ctx.get_prop(PROP_ASYNC_PROGRESS)
            if isinstance(progress, dict):
                with self._lock:
                    self._record["asynchronous"] = dict(progress)  # FedBuff: versions, staleness, drops
                    self._write_locked()
        elif event_type == EVENT_TREE_MODEL:
            info = fl_ctx.get_prop(PROP_TREE_MODEL)
            if isinstance(info, dict):
                with self._lock:
                    self._record["model"] = dict(info)  # a tree job's model: family, trees, hash, file
                    self._write_locked()
        elif event_type == InfoCollector.EVENT_TYPE_GET_STATS:
            collector = fl_ctx.get_prop(InfoCollector.CTX_KEY_STATS_COLLECTOR, None)
            if isinstance(collector, GroupInfoCollector):
                collector.add_info(group_name=STATS_GROUP, info=self.progress())
        elif event_type == EventType.FATAL_SYSTEM_ERROR:
            with self._lock:
                self._record["status"] = "aborted"
                self._record["abort_reason"] = str(fl_ctx.get_prop(FLContextKey.EVENT_DATA, "") or "")
                self._record["abort_round"] = self._record["current_round"]
                self._write_locked()
        elif event_type == EventType.CLIENT_DISCONNECTED:
            site = fl_ctx.get_prop(FLContextKey.DISCONNECTED_CLIENT_NAME)
            with self._lock:
                self._record["disconnected"].append({"site": site, "round": self._record["current_round"]})
                self._write_locked()
        elif event_type == EventType.END_RUN:
            self._on_end(fl_ctx)

    def _on_task_request(self, fl_ctx: FLContext) -> None:
        """Note each site whose job asked for a task: a participant that never asks did not start."""
        peer = fl_ctx.get_peer_context()
        site = peer.get_identity_name() if peer is not None else None
        if site:
            with self._lock:
                if site not in self._record.setdefault("asked", []):
                    self._record["asked"].append(site)

    def _on_late_result(self, fl_ctx: FLContext) -> None:
        """A late result the workflow has handled: recorded, used or dropped, and logged."""
        late = self._late.end(fl_ctx)
        if late is None:
            return
        with self._lock:
            self._record.setdefault("late_results", []).append(late)
            self._write_locked()
        what = "used" if late["used"] else f"dropped: {late['reason']}"
        self.log_warning(
            fl_ctx,
            f"late {late['task'] or 'task'} result of {late['site']} for round {late['round']} arrived "
            f"during round {late['during_round']}; {what}",
        )

    def _on_end(self, fl_ctx: FLContext) -> None:
        """Final status; participants whose job never asked for a task become failures with the reason."""
        try:
            clients = fl_ctx.get_engine().get_participating_clients()  # {token: Client}
            participants = sorted(client.name for client in clients.values())
        except AttributeError:  # an engine without participants (tests); nothing to check
            participants = []
        aborted = self._abort_signal is not None and self._abort_signal.triggered
        with self._lock:
            record = self._record
            failed = {f["site"] for f in record["failures"]}
            # A server that stopped on its own error (e.g. a missing HE context) never sent a task: its
            # sites did not fail, and the record keeps the server's reason instead.
            server_failed = record.get("status") == "aborted" and bool(record.get("abort_reason"))
            for site in [] if server_failed else participants:
                if site not in record.get("asked", []) and site not in failed:
                    reason = NEVER_STARTED.format(job_id=record.get("job_id"))
                    record["failures"].append(
                        Failure(site=site, task=None, round=record.get("current_round"), reason=reason)
                    )
            # FLARE's simulator also fires the abort signal when a run ends normally: only a run with a
            # failed site counts as stopped by it.
            if record.get("status") != "aborted" and aborted and record["failures"]:
                record["status"] = "aborted"
                record["abort_reason"] = (
                    "the server stopped the run before its workflow ended (a site's job failed, "
                    "or an admin aborted the job)"
                )
                record["abort_round"] = record.get("current_round")
            elif record.get("status") != "aborted":
                record["status"] = "finished"
            record["ended"] = time.time()
            self._write_locked()

    def _on_result(self, fl_ctx: FLContext) -> None:
        result = fl_ctx.get_prop(FLContextKey.TASK_RESULT)
        if result is None:
            return
        task = result.get_header(ReservedHeaderKey.TASK_NAME, "")
        site = result.get_peer_prop(ReservedKey.IDENTITY_NAME, None) or "unknown"
        rc = result.get_return_code(ReturnCode.OK)
        with self._lock:
            if site not in self._record["sites"]:
                self._record["sites"].append(site)  # every site that answered anything, for participation
            if task and task not in self._record.setdefault("tasks", []):
                self._record["tasks"].append(task)  # which steps ran (the report says what travelled)
            if rc != ReturnCode.OK:
                reason = result.get_header(HEADER_ERROR, None) or f"returned {rc}"
                self._record["failures"].append(
                    Failure(site=site, task=task, round=self._record["current_round"], reason=reason)
                )
                self._write_locked()
                return
            try:
                dxo = from_shareable(result)
            except ValueError:
                dxo = None
            releases = [
                {"site": site, "task": task, **stamp}
                for stamp in ((dxo.get_meta_prop(META_PRIVACY, None) or []) if dxo is not None else [])
                if isinstance(stamp, dict) and stamp.get("filter") == "DPUpdate"
            ]
            if releases:
                self._record.setdefault("update_privacy", []).extend(releases)
            if task != TASK_TRAIN:
                if releases:
                    self._write_locked()
                return
            metrics = dxo.get_meta_prop(META_SITE_METRICS, None) if dxo is not None else None
            if metrics is None:
                return
            rnd = int(metrics.get("round", self._record["current_round"] or 0))
            # One entry per round that ran (a resumed job starts after round 0).
            entry = next((r for r in self._record["rounds"] if r["round"] == rnd), None)
            if entry is None:
                entry = {"round": rnd, "sites": {}}
                self._record["rounds"].append(entry)
                self._record["rounds"].sort(key=lambda r: r["round"])
            entry["sites"][site] = metrics
            entry.update(round_summary(entry["sites"]))

    def _check_divergence(self, fl_ctx: FLContext) -> None:
        """Warn (log and record) when the sites' training losses drift apart over rounds."""
        with self._lock:
            history = [
                {site: m[M_TRAIN_LOSS] for site, m in r["sites"].items() if m.get(M_TRAIN_LOSS) is not None}
                for r in self._record.get("rounds", [])
            ]
            result = loss_divergence(history)
            was = (self._record.get("divergence") or {}).get("diverging")
            self._record["divergence"] = result
        if result.get("diverging") and not was:
            self.log_warning(fl_ctx, result["message"])

    def progress(self) -> dict:
        """What ``show_stats`` shows: round, sites reported this round, current global metric, failures."""
        with self._lock:
            rounds = self._record.get("rounds", [])
            last = rounds[-1] if rounds else {}
            draws = (self._record.get("sampling") or {}).get("rounds") or [{}]
            return {
                "sites_sampled": draws[-1].get("sampled"),  # None: the workflow asks every site
                "current_round": self._record.get("current_round"),
                "num_rounds": self._record.get("num_rounds"),
                "sites_reported": sorted(last.get("sites", {})),
                "global_accuracy": last.get("global_accuracy"),
                "global_auc": last.get("global_auc"),
                "failures": list(self._record.get("failures", [])),
                "divergence": (self._record.get("divergence") or {}).get("message"),
                "rejected_updates": list(self._record.get("rejected_updates", [])),
                "late_results": list(self._record.get("late_results", [])),
            }

    def _write(self) -> None:
        with self._lock:
            self._write_locked()

    def _write_locked(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._record, indent=2))
        tmp.replace(self._path)  # atomic: a reader never sees half a record
