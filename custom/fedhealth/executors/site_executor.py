"""The FLARE glue every fedhealth site executor shares: lifecycle, task dispatch, failure replies, metrics.

A subclass loads its site's data in :meth:`SiteExecutor.load_site` (called on ``START_RUN``) and
names its task handlers in :meth:`SiteExecutor.task_handlers`. A data problem at start, or a
``ValueError``/``RuntimeError`` in a task, fails the task with a reply whose ``fedhealth_error``
header says which site failed and why, so the server can name it; nothing else crashes a round.
That header reaches the server and the run record the job's submitter downloads, so a failure,
at start-up or in a task, is told by :func:`fedhealth.data.messages.safe_reason`: the kit's own
message (file, column, line, counts), or only the type of an OS or library error, whose message
may carry a path or a value from the data.
Per-round curves stream to the server's TensorBoard receiver (aggregate numbers only).

The site sets the floor, not the job: before a ``train`` task runs, the base checks the request
(:meth:`SiteExecutor.train_request`: batch size, steps, training rows, the server's learning rate,
DP-SGD) against the site's own limits under the job's privacy scope
(:mod:`fedhealth.policy.site_limits`), ``submit_model`` against ``allow_submit_model`` and the
federated-statistics task against ``min_examples_per_round`` (a small cell is not released); a request
that does not meet them is declined through :meth:`SiteExecutor.fail` with every reason, each
opening ``site policy:`` and naming the setting and the file that set it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from nvflare.apis.analytix import AnalyticsDataType
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import FLContextKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal
from nvflare.apis.utils.analytix_utils import create_analytic_dxo, send_analytic_dxo

from fedhealth import constants as C
from fedhealth.data.messages import safe_reason
from fedhealth.policy.site_limits import (
    EffectiveLimits,
    SiteLimits,
    TrainRequest,
    check_statistics,
    check_submit_model,
    check_train,
    planned_steps,
    site_limits,
)

Handler = Callable[[Shareable, FLContext], Shareable]


class SiteExecutor(Executor):
    """Base of the site executors.

    A subclass that trains sets ``self.local`` (:func:`fedhealth.training.loops.local_settings`), and
    ``self.dp`` when it trains with DP-SGD, and implements :meth:`n_train`; the default
    :meth:`train_request` builds the request from them.

    Args:
        stream_metrics: stream per-round training and validation curves to the server.
    """

    local: dict  # the job's local-training settings (batch_size, local_steps, local_epochs, ...)

    def __init__(self, *, stream_metrics: bool = True) -> None:
        super().__init__()
        self.stream_metrics = stream_metrics
        self.dp = None  # the job's DP-SGD settings (fedhealth.privacy.dp_config.DPConfig), if any
        self._ready = False
        self._site_error: str | None = None
        self._local_weights: dict | None = None
        self._run_dir: Path | None = None
        self._limits: SiteLimits | None = None

    # ----------------------------------------------------------------------------- for subclasses
    def load_site(self, fl_ctx: FLContext, site_root: Path) -> None:
        """Load this site's data from its own folder; raise when unusable.

        Raise :class:`~fedhealth.data.messages.SiteDataError` (or a ``ValueError`` from a ``raise``
        statement of the kit) with a message that names files, keys, lines and counts, never a value:
        that message goes to the server. Any other exception is reported by its type only.
        """
        raise NotImplementedError

    def release_site(self) -> None:
        """Drop what :meth:`load_site` loaded (``END_RUN``)."""

    def task_handlers(self) -> dict[str, Handler]:
        """Task name -> handler; ``submit_model`` is added by the base."""
        raise NotImplementedError

    def n_train(self) -> int:
        """The site's training rows (images), once :meth:`load_site` has run."""
        raise NotImplementedError

    def round_steps(self) -> int:
        """Optimizer steps this site will take in a round (a subclass applies its own cap)."""
        return planned_steps(
            self.n_train(),
            batch_size=int(self.local["batch_size"]),
            local_steps=int(self.local.get("local_steps", 0) or 0),
            local_epochs=int(self.local.get("local_epochs", 1) or 1),
        )

    def round_learning_rate(self, shareable: Shareable) -> float:
        """The learning rate this train task trains at (by default the server's, from the DXO meta)."""
        return self.learning_rate(self.received_weights(shareable))

    def train_request(self, shareable: Shareable, fl_ctx: FLContext) -> TrainRequest:
        """What the train task in ``shareable`` would do here, for :func:`check_train`."""
        return TrainRequest(
            batch_size=int(self.local["batch_size"]),
            steps=self.round_steps(),
            n_train=self.n_train(),
            learning_rate=self.round_learning_rate(shareable),
            dp_target_epsilon=self.dp.target_epsilon if self.dp is not None else None,
        )

    # ----------------------------------------------------------------------------- lifecycle
    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.START_RUN:
            workspace = fl_ctx.get_engine().get_workspace()
            self._run_dir = Path(workspace.get_run_dir(fl_ctx.get_job_id()))
            try:
                self._limits = site_limits(Path(workspace.get_root_dir()))
                scope = self._scope(fl_ctx)
                self.log_info(fl_ctx, f"site limits under scope {scope!r}: {self._limits_line(fl_ctx)}")
                self.load_site(fl_ctx, Path(workspace.get_root_dir()))
                self._ready = True
            except Exception as exc:  # noqa: BLE001 - a library's error would reach FLARE's log with its message
                self._site_error = safe_reason(exc)  # goes to the server in every task's reply
                self.log_error(fl_ctx, f"site data unusable: {self._site_error}")
        elif event_type == EventType.END_RUN:
            self._ready = False
            self.release_site()

    # ----------------------------------------------------------------------------- dispatch
    def execute(
        self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal
    ) -> Shareable:
        handlers = {**self.task_handlers(), C.TASK_SUBMIT_MODEL: self.submit_model}
        handler = handlers.get(task_name)
        if handler is None:
            self.log_error(fl_ctx, f"unknown task {task_name!r}")
            return make_reply(ReturnCode.TASK_UNKNOWN)
        if not self._ready:
            return self.fail(fl_ctx, task_name, self._site_error or "site data not loaded")
        if abort_signal.triggered:
            return make_reply(ReturnCode.TASK_ABORTED)
        try:
            declined = self.check_limits(task_name, shareable, fl_ctx)
            if declined:
                return self.fail(fl_ctx, task_name, "; ".join(declined))
            return handler(shareable, fl_ctx)
        except (ValueError, RuntimeError) as exc:
            return self.fail(fl_ctx, task_name, safe_reason(exc))

    # ----------------------------------------------------------------------------- site limits
    @staticmethod
    def _scope(fl_ctx: FLContext) -> str:
        return str(fl_ctx.get_prop(FLContextKey.EFFECTIVE_JOB_SCOPE_NAME, "") or "")

    def effective_limits(self, fl_ctx: FLContext) -> EffectiveLimits:
        """The site's limits under the job's effective privacy scope (the site's ``privacy.json``)."""
        limits = self._limits if self._limits is not None else SiteLimits.from_layers([])
        return limits.for_scope(self._scope(fl_ctx))

    def _limits_line(self, fl_ctx: FLContext) -> str:
        effective = self.effective_limits(fl_ctx)
        values = ", ".join(f"{k}={v}" for k, v in asdict(effective.values).items())
        return f"{values}, dp_max_epsilon={effective.dp_max_epsilon}"

    def check_limits(self, task_name: str, shareable: Shareable, fl_ctx: FLContext) -> list[str]:
        """Every reason this site declines the task under its own limits (empty: go ahead)."""
        if task_name == C.TASK_TRAIN:
            return check_train(self.train_request(shareable, fl_ctx), self.effective_limits(fl_ctx))
        if task_name == C.TASK_SUBMIT_MODEL:
            return check_submit_model(self.effective_limits(fl_ctx))
        if task_name == C.TASK_FED_STATS:
            return check_statistics(self.n_train(), self.effective_limits(fl_ctx))
        return []

    def fail(self, fl_ctx: FLContext, task_name: str, reason: str) -> Shareable:
        """An ``EXECUTION_EXCEPTION`` reply whose ``fedhealth_error`` header names the site and reason."""
        message = f"site {fl_ctx.get_identity_name()} failed task {task_name!r}: {reason}"
        self.log_error(fl_ctx, message)
        reply = make_reply(ReturnCode.EXECUTION_EXCEPTION)
        reply.set_header(C.HEADER_ERROR, message)
        return reply

    # ----------------------------------------------------------------------------- shared helpers
    @staticmethod
    def received_weights(shareable: Shareable) -> DXO:
        """The task's model DXO; anything but WEIGHTS is refused."""
        dxo = from_shareable(shareable)
        if dxo.data_kind != DataKind.WEIGHTS:
            raise ValueError(f"expected model weights, got a {dxo.data_kind} DXO")
        return dxo

    @staticmethod
    def learning_rate(dxo: DXO) -> float:
        """This round's learning rate, which the server's scheduled generator put in the DXO meta."""
        lr = dxo.get_meta_prop(C.META_LEARNING_RATE)
        if lr is None:
            raise ValueError(
                "the train task carries no learning rate; the server must use "
                "fedhealth.shareables.scheduled_generator.ScheduledShareableGenerator"
            )
        return float(lr)

    # ----------------------------------------------------------------------------- shared tasks
    def submit_model(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        """This site's locally trained weights of the last round, for cross-site evaluation."""
        if self._local_weights is None:
            return make_reply(ReturnCode.EMPTY_RESULT)
        return DXO(data_kind=DataKind.WEIGHTS, data=self._local_weights).to_shareable()

    def stream(self, fl_ctx: FLContext, current_round: int, metrics: dict) -> None:
        """Per-round curves to the server's TensorBoard receiver (aggregate numbers only)."""
        if not self.stream_metrics:
            return
        for key in C.STREAMED_METRICS:
            value = metrics.get(key)
            if value is not None:
                dxo = create_analytic_dxo(
                    tag=key,
                    value=float(value),
                    data_type=AnalyticsDataType.SCALAR,
                    global_step=int(current_round),
                )
                send_analytic_dxo(self, dxo, fl_ctx, event_type=C.ANALYTICS_EVENT, fire_fed_event=True)


def clean_metrics(metrics: dict) -> dict:
    """NaN (e.g. AUC on a one-class split) becomes None, nested dicts included, so JSON stays standard."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            value = clean_metrics(value)
        out[key] = None if isinstance(value, float) and math.isnan(value) else value
    return out
