"""Asynchronous federated learning as a FLARE workflow: FedBuff's buffered aggregation.

FLARE 2.9's workflows are synchronous: a round waits for its sites. Here no one waits. Every site
gets a ``train`` task with the current global model and its *version* (the task's ``CURRENT_ROUND``
header); as each result arrives it goes into the buffer of :mod:`fedhealth.algorithms.fedbuff`
(Nguyen et al. 2022) and that site at once gets a new task with the latest model. Every
``buffer_size`` results make a new version, which the persistor saves; the workflow ends after
``num_versions`` versions (or ``max_seconds``), cancelling the tasks still out, and the job's next
workflow (cross-site evaluation) validates the last version.

An update is weighted by its site's training rows times ``(1 + staleness) ** -staleness_exponent``;
one more than ``max_staleness`` versions old is dropped, one with NaN/Inf or other parameters is
refused, each announced with ``fedhealth.update_rejected`` (its round: the version it trained from).
A task with no answer within ``train_timeout`` is counted and sent again (a site reported dead gets
its next task after a pause
that doubles while it stays dead); its result, if it still comes, is counted as late and not used. A site
whose task fails is sent no more; the job stops only when no site is left.

For the run record each version is a round: ``ROUND_STARTED`` when version ``v`` becomes current,
``ROUND_DONE`` when ``v + 1`` is saved; the sites' metrics land in the round of the version they
trained from. The settings, every version's buffer (site, start version, staleness, weights), the
dropped, timed-out and late results go out with ``fedhealth.async_progress`` for the
:class:`~fedhealth.widgets.run_recorder.RunRecorder` (``asynchronous`` in ``fedhealth_run.json``).
"""

from __future__ import annotations

import copy
import queue
import time

import numpy as np
from nvflare.apis.controller_spec import ClientTask, SendOrder, Task, TaskCompletionStatus
from nvflare.apis.dxo import DataKind, MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import FLContextKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.signal import Signal
from nvflare.app_common.abstract.model import ModelLearnableKey, make_model_learnable
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType

from fedhealth import constants as C
from fedhealth.algorithms.fedbuff import AppliedVersion, FedBuff, FedBuffConfig, FedBuffUpdateError
from fedhealth.workflows.step_controller import StepController

DEAD_SITE_RETRY_S = 10.0  # a site FLARE reports dead gets its next task after this pause, doubled
MAX_RETRY_S = 300.0  # each time it is still dead, up to this
_SITE, _VERSION = "fedhealth_site", "fedhealth_version"  # Task props


class FedBuffController(StepController):
    """FedBuff: buffered asynchronous aggregation with staleness weighting.

    Args:
        num_versions: global versions to make (each is a round of the run record).
        buffer_size: K, the results that make one version.
        min_clients: sites that must be connected at the start.
        staleness_exponent: ``a`` of the staleness weight ``(1 + s) ** -a`` (0: none; FedBuff: 0.5).
        max_staleness: drop a result more than this many versions old (None: use every one).
        server_lr: the server's step on the buffered average (1: plain averaging).
        max_update_norm: clip each update to this L2 norm (None: no clipping).
        persistor_id: the model persistor (initial model; saves every version).
        shareable_generator_id: turns the model into the train task (learning-rate schedule by version).
        train_task_name: the sites' train task.
        train_timeout: seconds a site's task may take (0: no limit; a site that vanishes then holds
            one task forever, though the others go on).
        max_seconds: stop after this long even with fewer versions (0: no limit).
        task_check_period: seconds between FLARE's checks of the tasks.
    """

    def __init__(
        self,
        *,
        num_versions: int,
        buffer_size: int,
        min_clients: int,
        staleness_exponent: float = 0.5,
        max_staleness: int | None = None,
        server_lr: float = 1.0,
        max_update_norm: float | None = None,
        persistor_id: str = "persistor",
        shareable_generator_id: str = "shareable_generator",
        train_task_name: str = C.TASK_TRAIN,
        train_timeout: int = 0,
        max_seconds: float = 0,
        task_check_period: float = 0.05,
    ) -> None:
        super().__init__(task_check_period=task_check_period)
        self.config = FedBuffConfig(
            buffer_size=buffer_size,
            staleness_exponent=float(staleness_exponent),
            max_staleness=max_staleness,
            server_lr=float(server_lr),
            max_update_norm=None if max_update_norm is None else float(max_update_norm),
        )
        if num_versions < 1 or min_clients < 1 or train_timeout < 0 or max_seconds < 0:
            raise ValueError(
                "num_versions and min_clients must be at least 1, train_timeout and max_seconds 0 or "
                f"more; got {num_versions}, {min_clients}, {train_timeout}, {max_seconds}."
            )
        self.num_versions, self.min_clients = int(num_versions), int(min_clients)
        self.persistor_id, self.generator_id = persistor_id, shareable_generator_id
        self.train_task_name = train_task_name
        self.train_timeout, self.max_seconds = int(train_timeout), float(max_seconds)
        self.core: FedBuff | None = None
        self.record: dict = {}
        self._inbox: queue.Queue = queue.Queue()
        self._tasks: dict[str, Task] = {}  # site -> its current task
        self._timed_out: dict[str, tuple[str, int, str]] = {}  # client task id -> (site, start, status)
        self._retry: dict[str, float] = {}  # site -> when to send it a task again
        self._dead: dict[str, int] = {}  # site -> its tasks in a row that ended with the site dead
        self._active: set[str] = set()
        self._dtypes: dict[str, np.dtype] = {}
        self._started = 0.0

    def start_controller(self, fl_ctx: FLContext) -> None:
        self.persistor = self._engine.get_component(self.persistor_id)
        self.generator = self._engine.get_component(self.generator_id)
        if self.persistor is None or self.generator is None:
            self.system_panic(
                f"no {self.persistor_id!r} or {self.generator_id!r} component in the job", fl_ctx
            )

    # ------------------------------------------------------------------ flow
    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        learnable = self.persistor.load(fl_ctx)
        weights = learnable[ModelLearnableKey.WEIGHTS]
        self._dtypes = {k: np.asarray(v).dtype for k, v in weights.items()}
        self.core = FedBuff(weights, self.config)
        sites = sorted(c.name for c in self._engine.get_clients())
        if len(sites) < self.min_clients:
            self.system_panic(f"FedBuff needs {self.min_clients} sites, {len(sites)} connected", fl_ctx)
            return
        self._active, self._started = set(sites), time.monotonic()
        self.record = _new_record(self.config, self.num_versions, self.train_timeout, self.max_seconds)
        fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, learnable, private=True, sticky=True)
        fl_ctx.set_prop(AppConstants.NUM_ROUNDS, self.num_versions, private=True, sticky=False)
        fl_ctx.set_prop(AppConstants.START_ROUND, 0, private=True, sticky=False)
        self.fire_event(AppEventType.TRAINING_STARTED, fl_ctx)
        self._begin_round(0, fl_ctx)
        for site in sites:
            self._dispatch(site, fl_ctx)
        while self.core.version < self.num_versions:
            if abort_signal.triggered or not self._active:
                self.cancel_all_tasks(fl_ctx=fl_ctx)
                return
            if self.max_seconds and time.monotonic() - self._started > self.max_seconds:
                self.record["stopped"] = (
                    f"time budget of {self.max_seconds:g} s spent at version {self.core.version}"
                )
                self.log_warning(fl_ctx, f"FedBuff: {self.record['stopped']}; the last version stands")
                break
            for site in [s for s, when in self._retry.items() if when <= time.monotonic()]:
                del self._retry[site]
                self._dispatch(site, fl_ctx)
            try:
                item = self._inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            self._handle(item, fl_ctx)
        # The tasks still out, results already queued included: cancelled, their work unused.
        self.record["unfinished"] = dict(sorted(self.core.outstanding().items()))
        self.cancel_all_tasks(fl_ctx=fl_ctx)
        while not self._inbox.empty():
            self._inbox.get_nowait()
        self._publish(fl_ctx)
        self.fire_event(AppEventType.TRAINING_FINISHED, fl_ctx)

    def _dispatch(self, site: str, fl_ctx: FLContext) -> None:
        """Send ``site`` the current model (skipped for a site that failed or once the job is done)."""
        if site not in self._active or self.core.version >= self.num_versions:
            return
        version = self.core.checkout(site)
        data = self.generator.learnable_to_shareable(fl_ctx.get_prop(AppConstants.GLOBAL_MODEL), fl_ctx)
        data.set_header(AppConstants.CURRENT_ROUND, version)
        data.set_header(AppConstants.NUM_ROUNDS, self.num_versions)
        task = Task(
            name=self.train_task_name,
            data=data,
            props={_SITE: site, _VERSION: version},
            timeout=self.train_timeout,
            result_received_cb=self._result_received,
            task_done_cb=self._task_done,
        )
        self._tasks[site] = task
        self.send(task, fl_ctx, targets=[site], send_order=SendOrder.ANY)

    # FLARE threads: only queue what happened; the control flow does the rest.
    def _result_received(self, client_task: ClientTask, fl_ctx: FLContext) -> None:
        self._inbox.put(("result", client_task.task, client_task.result))

    def _task_done(self, task: Task, fl_ctx: FLContext) -> None:
        if task.completion_status == TaskCompletionStatus.CANCELLED or any(
            ct.result is not None for ct in task.client_tasks
        ):
            return
        self._inbox.put(("ended", task, task.completion_status))

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.BEFORE_PROCESS_SUBMISSION:
            late = self._timed_out.get(fl_ctx.get_prop(FLContextKey.TASK_ID))
            if late is not None:
                self._inbox.put(("late", *late))

    # ------------------------------------------------------------------ results
    def _handle(self, item: tuple, fl_ctx: FLContext) -> None:
        kind = item[0]
        if kind == "late":
            site, start, state = item[1:]
            self.record["late"].append({"site": site, "start_version": start})
            reason = (
                f"The result of site {site!r} (trained from version {start}) arrived after its task "
                f"had ended ({state}, train_timeout {self.train_timeout} s); not used."
            )
            self._reject(site, start, reason, fl_ctx)
            return
        task = item[1]
        site, start = task.props[_SITE], task.props[_VERSION]
        if self._tasks.get(site) is not task:
            return  # a task this site no longer holds
        del self._tasks[site]
        if kind == "ended":
            self._ended(site, start, task, item[2], fl_ctx)
            return
        result = item[2]
        rc = result.get_return_code(ReturnCode.OK)
        if rc != ReturnCode.OK:
            reason = result.get_header(C.HEADER_ERROR, None) or f"returned {rc}"
            self.core.abandon(site)
            self._active.discard(site)
            self.record["failed_sites"][site] = reason
            self.log_error(fl_ctx, f"FedBuff: {site} failed ({reason}); it is sent no more tasks")
            if not self._active:
                self.system_panic(
                    f"FedBuff: no site left to train; the last, {site}, failed: {reason}", fl_ctx
                )
            return
        self._dead.pop(site, None)
        self._take(site, start, result, fl_ctx)
        self._dispatch(site, fl_ctx)

    def _take(self, site: str, start: int, result, fl_ctx: FLContext) -> None:
        """One site's result into the buffer; a new version when it fills."""
        try:
            dxo = from_shareable(result)
            if dxo.data_kind not in (DataKind.WEIGHTS, DataKind.WEIGHT_DIFF):
                raise ValueError(f"it is a {dxo.data_kind} result; FedBuff takes WEIGHTS or WEIGHT_DIFF")
            part = "weights" if dxo.data_kind == DataKind.WEIGHTS else "delta"
            n = dxo.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, 1)
            done = self.core.submit(site, sample_weight=n, **{part: dxo.data or {}})
        except ValueError as exc:  # FedBuffUpdateError names the site; a malformed result does not
            self.core.abandon(site)  # no-op after submit: the task is over either way
            reason = str(exc)
            if not isinstance(exc, FedBuffUpdateError):
                reason = f"The result of site {site!r} (trained from version {start}) is refused: {reason}."
            self.record["refused"] += 1
            self._reject(site, start, reason, fl_ctx)
            return
        update = done.update
        if done.status == "dropped":
            self.record["dropped"].append(
                {"site": site, "start_version": start, "staleness": update.staleness}
            )
            self._reject(site, start, done.reason, fl_ctx)
            self._publish(fl_ctx)
            return
        self.log_info(
            fl_ctx,
            f"FedBuff: {site} from version {start}, staleness {update.staleness}, weight "
            f"{update.staleness_weight:.3f} (buffer {self.core.buffered or self.config.buffer_size}/"
            f"{self.config.buffer_size})",
        )
        if done.applied is not None:
            self._new_version(done.applied, fl_ctx)

    def _ended(self, site: str, start: int, task: Task, status, fl_ctx: FLContext) -> None:
        """A task that ended without a result: count it, and send the site another."""
        self.core.abandon(site)
        state = getattr(status, "value", str(status))
        for ct in task.client_tasks:
            self._timed_out[ct.id] = (site, start, state)
        self.record["timeouts"].append({"site": site, "start_version": start, "status": state})
        pause = 0.0
        if status == TaskCompletionStatus.CLIENT_DEAD:  # 10 s, 20 s, ... up to 5 minutes while it stays dead
            self._dead[site] = self._dead.get(site, 0) + 1
            pause = min(DEAD_SITE_RETRY_S * 2 ** (self._dead[site] - 1), MAX_RETRY_S)
        self.log_warning(
            fl_ctx,
            f"FedBuff: {site}'s task from version {start} ended without a result ({state}); "
            f"sent again in {pause:g} s",
        )
        self._retry[site] = time.monotonic() + pause
        self._publish(fl_ctx)

    def _new_version(self, applied: AppliedVersion, fl_ctx: FLContext) -> None:
        """Save the new version, close its round, open the next."""
        weights = {k: v.astype(self._dtypes.get(k, np.float32)) for k, v in self.core.model.items()}
        learnable = make_model_learnable(weights, {})
        fl_ctx.set_prop(AppConstants.GLOBAL_MODEL, learnable, private=True, sticky=True)
        self.persistor.save(learnable, fl_ctx)
        entry = {**applied.as_dict(), "seconds": round(time.monotonic() - self._started, 3)}
        self.record["versions"].append(entry)
        staleness = [u.staleness for u in applied.updates]
        sites = [u.site for u in applied.updates]
        self.log_info(fl_ctx, f"FedBuff: version {applied.version} from {sites}, staleness {staleness}")
        self.fire_event(AppEventType.ROUND_DONE, fl_ctx)
        self._publish(fl_ctx)
        if applied.version < self.num_versions:
            self._begin_round(applied.version, fl_ctx)

    def _begin_round(self, version: int, fl_ctx: FLContext) -> None:
        fl_ctx.set_prop(AppConstants.CURRENT_ROUND, version, private=True, sticky=True)
        self.fire_event(AppEventType.ROUND_STARTED, fl_ctx)

    def _reject(self, site: str, start: int, reason: str, fl_ctx: FLContext) -> None:
        self.log_error(fl_ctx, f"FedBuff: {reason}")
        record = {"site": site, "round": start, "reason": reason}
        self.fire_event_with_data(C.EVENT_UPDATE_REJECTED, fl_ctx, C.PROP_REJECTION, record)

    def _publish(self, fl_ctx: FLContext) -> None:
        self.fire_event_with_data(
            C.EVENT_ASYNC_PROGRESS, fl_ctx, C.PROP_ASYNC_PROGRESS, copy.deepcopy(self.record)
        )


def _new_record(config: FedBuffConfig, num_versions: int, train_timeout: int, max_seconds: float) -> dict:
    """The workflow's record for the run record: settings, then what happened."""
    return {
        "algorithm": "fedbuff",
        "settings": {
            "num_versions": num_versions,
            "buffer_size": config.buffer_size,
            "staleness_exponent": config.staleness_exponent,
            "max_staleness": config.max_staleness,
            "server_lr": config.server_lr,
            "max_update_norm": config.max_update_norm,
            "train_timeout": train_timeout,
            "max_seconds": max_seconds,
        },
        "versions": [],
        "dropped": [],
        "refused": 0,
        "timeouts": [],
        "late": [],
        "failed_sites": {},
        "unfinished": {},
        "stopped": None,
    }
