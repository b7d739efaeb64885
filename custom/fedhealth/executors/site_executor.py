"""The one site executor: any task, any client algorithms; lifecycle, task dispatch, failure replies, metrics.

A thin FLARE layer over the FLARE-free core: the job names a task (:mod:`fedhealth.tasks`: heart,
DICOM images, ...) and a list of client algorithms (:mod:`fedhealth.client`: FedProx, SCAFFOLD, Ditto,
fine-tuning, DP-SGD, top-k, the step cap); on ``START_RUN`` the task loads the site's data from the
site's own folder and a :class:`~fedhealth.client.runner.SiteRunner` runs each round. This module only
routes tasks and converts messages (:mod:`fedhealth.executors.round_messages`). A data problem at start, or a
``ValueError``/``RuntimeError`` in a task, fails the task with a reply whose ``fedhealth_error``
header says which site failed and why, so the server can name it; nothing else crashes a round.
That header reaches the server and the run record the job's submitter downloads, so a failure,
at start-up or in a task, is told by :func:`fedhealth.data.messages.safe_reason`: the kit's own
message (file, column, line, counts), or only the type of an OS or library error, whose message
may carry a path or a value from the data.
Per-round curves stream to the server's TensorBoard receiver (aggregate numbers only).

Small cells: every metric a reply carries (train, validate) and every streamed curve has passed the
runner's release (:mod:`fedhealth.privacy.released_metrics`) under the site's minimum cell, the larger
of its ``min_cell_count`` setting (default 5) and the job's ``min_cell``: a metric of fewer than that
many patients, or a class-wise one with a small positive or negative count, is sent as ``None`` and
named in the reply's ``suppressed`` list.

The site sets the floor, not the job: before a ``train`` task runs, the base checks the request
(:meth:`SiteExecutor.train_request`: batch size, steps, training rows, the server's learning rate,
DP-SGD) against the site's own limits under the job's privacy scope
(:mod:`fedhealth.policy.site_limits`), ``submit_model`` against ``allow_submit_model`` and the
federated-statistics task against ``min_examples_per_round`` (a small cell is not released); a request
that does not meet them is declined through :meth:`SiteExecutor.fail` with every reason, each
opening ``site policy:`` and naming the setting and the file that set it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from nvflare.apis.analytix import AnalyticsDataType
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import FLContextKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import ReservedHeaderKey, Shareable, make_reply
from nvflare.apis.signal import Signal
from nvflare.apis.utils.analytix_utils import create_analytic_dxo, send_analytic_dxo
from nvflare.app_common.app_constant import AppConstants

from fedhealth import constants as C
from fedhealth.client.base import build_algorithms
from fedhealth.client.runner import SiteRunner
from fedhealth.data.messages import SiteDataError, safe_reason
from fedhealth.data.site_data import site_settings
from fedhealth.executors.round_messages import model_dxo, round_input, round_reply
from fedhealth.policy.site_limits import (
    EffectiveLimits,
    SiteLimits,
    TrainRequest,
    check_statistics,
    check_submit_model,
    check_train,
    site_limits,
)
from fedhealth.privacy.small_cells import DEFAULT_MIN_CELL, check_min_cell
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.registry import build_task
from fedhealth.training.loops import local_settings
from fedhealth.training.metrics import clean_metrics
from fedhealth.training.warmup import warm_up_in_background

Handler = Callable[[Shareable, FLContext], Shareable]


class SiteExecutor(Executor):
    """The one site executor: any task (:mod:`fedhealth.tasks`), any client algorithms.

    The algorithms are :mod:`fedhealth.client` plug-ins.

    It answers ``train``, ``validate``, ``submit_model`` and the task's own steps (heart's ``fed_stats``
    and ``set_scaling``); a job lists those in the executor's ``tasks``.

    Args:
        task: the task's registered name (``heart``, ``dicom``, ...).
        task_args: the task's options (e.g. heart's ``scaling``; the imaging task's model and labels).
        algorithms: client algorithms, ``[{"name": "fedprox", "args": {"mu": 0.3}}, ...]`` (empty: FedAvg).
        batch_size: local mini-batch size (at least the site's ``min_batch_size``, 16 by default).
        local_steps: optimizer steps per round (0: use ``local_epochs``).
        local_epochs: passes over the local data per round. Either workload is capped by the site's own
            ``max_local_steps`` setting, if it has one (``local/fedhealth_site.json``).
        optimizer: ``"sgd"`` or ``"adam"``.
        weight_decay: L2 penalty.
        seed: seed of the local shuffling (and augmentation).
        n_bootstrap: bootstrap resamples for the 95% intervals of the validate task.
        stream_metrics: stream per-round curves to the server (TensorBoard).
        min_cell: the job's minimum cell count for released metrics; a site applies the larger of
            this and its own ``min_cell_count`` setting, so a job can raise the site's minimum, never
            lower it.
    """

    def __init__(
        self,
        *,
        task: str,
        task_args: dict | None = None,
        algorithms: list | None = None,
        batch_size: int = 16,
        local_steps: int = 0,
        local_epochs: int = 1,
        optimizer: str = "sgd",
        weight_decay: float = 0.0,
        seed: int = 0,
        n_bootstrap: int = 1000,
        stream_metrics: bool = True,
        min_cell: int = DEFAULT_MIN_CELL,
    ) -> None:
        super().__init__()
        self.task = build_task(task, task_args)  # unknown tasks and arguments fail the job at start
        self.local = local_settings(
            batch_size=batch_size,
            local_steps=local_steps,
            local_epochs=local_epochs,
            optimizer=optimizer,
            weight_decay=weight_decay,
        )
        self.algorithm_specs = list(algorithms or [])
        built = build_algorithms(self.algorithm_specs, self.local)  # checks names, options and pairs now
        dp = next((a for a in built if a.name == "dp_sgd"), None)
        self.dp = dp.dp if dp is not None else None  # the job's DP-SGD settings (DPConfig), if any
        self.seed = seed
        self.n_bootstrap = n_bootstrap
        self.stream_metrics = stream_metrics
        self.min_cell = check_min_cell(min_cell, where="the executor's min_cell")
        self.runner: SiteRunner | None = None
        self._metadata: dict = {}
        self._ready = False
        self._site_error: str | None = None
        self._run_dir: Path | None = None
        self._limits: SiteLimits | None = None

    # ----------------------------------------------------------------------------- site
    def load_site(self, fl_ctx: FLContext, site_root: Path) -> None:
        """Load this site's data for the task and set up the algorithms (``START_RUN``).

        A data problem raises :class:`~fedhealth.data.messages.SiteDataError` (or a ``ValueError`` of
        the kit) with a message that names files, keys, lines and counts, never a value: that message
        goes to the server. Any other exception is reported by its type only.
        """
        warm_up_in_background()  # torch's first-optimizer imports, off the first round's critical path
        settings = site_settings(site_root)
        metadata = settings.get(C.SITE_METADATA_KEY) or {}
        if not isinstance(metadata, dict):
            raise SiteDataError(f"local/{C.SITE_CONFIG_FILE}: '{C.SITE_METADATA_KEY}' must be a JSON object")
        self._metadata = metadata
        context = SiteContext(fl_ctx.get_identity_name(), site_root, settings, self._run_dir)
        site = self.task.load_site(context)
        self.runner = SiteRunner(
            self.task,
            site,
            algorithms=self.algorithm_specs,
            local=self.local,
            seed=self.seed,
            settings=settings,
            run_dir=self._run_dir,
            min_cell=self.min_cell,
        )
        sizes = ", ".join(f"{k}={v}" for k, v in site.sizes().items())
        names = [a.name for a in self.runner.algorithms] or ["fedavg"]
        self.log_info(
            fl_ctx,
            f"task {self.task.name!r} loaded: {sizes}; client algorithms {names}; metrics of fewer than "
            f"{self.runner.min_cell} patients (or of a class) are withheld",
        )

    def release_site(self) -> None:
        """Drop what :meth:`load_site` loaded (``END_RUN``)."""
        self.runner = None

    def task_handlers(self) -> dict[str, Handler]:
        """Task name -> handler; ``submit_model`` is added by :meth:`execute`."""
        extra = {name: self._extra_handler(name) for name in self.task.steps}
        return {**extra, C.TASK_TRAIN: self._train, C.TASK_VALIDATE: self._validate}

    def n_train(self) -> int:
        """The site's training rows (images), once :meth:`load_site` has run."""
        return self.runner.site.n_train

    def round_steps(self) -> int:
        """Optimizer steps this site will take in a round (the job's, under any cap)."""
        return self.runner.round_steps()

    def train_request(self, shareable: Shareable, fl_ctx: FLContext) -> TrainRequest:
        """What the train task in ``shareable`` would do here, for :func:`check_train`."""
        return TrainRequest(
            batch_size=int(self.local["batch_size"]),
            steps=self.round_steps(),
            n_train=self.n_train(),
            learning_rate=self.runner.round_lr(round_input(shareable)),
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
        if task_name in (C.TASK_SUBMIT_MODEL, C.TASK_SUBMIT_TREE):
            return check_submit_model(self.effective_limits(fl_ctx))
        if task_name in (C.TASK_FED_STATS, C.TASK_EHR_PROFILE):
            return check_statistics(self.n_train(), self.effective_limits(fl_ctx))
        return []

    def fail(self, fl_ctx: FLContext, task_name: str, reason: str) -> Shareable:
        """An ``EXECUTION_EXCEPTION`` reply whose ``fedhealth_error`` header names the site and reason."""
        message = f"site {fl_ctx.get_identity_name()} failed task {task_name!r}: {reason}"
        self.log_error(fl_ctx, message)
        reply = make_reply(ReturnCode.EXECUTION_EXCEPTION)
        reply.set_header(C.HEADER_ERROR, message)
        return reply

    # ----------------------------------------------------------------------------- tasks
    def _train(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        state = self.runner.run_round(round_input(shareable))
        metrics = clean_metrics(state.metrics)
        loss = metrics.get(C.M_TRAIN_LOSS)
        loss_text = "suppressed" if loss is None else f"{loss:.4f}"
        for note in state.notes:
            self.log_info(fl_ctx, f"round {state.rnd.round_index}: {note}")
        self.log_info(
            fl_ctx,
            f"round {state.rnd.round_index}: lr={state.lr:.5g} train_loss={loss_text} "
            f"{metrics[C.M_EVAL_SPLIT]}_loss(received)={metrics.get('global_loss')}",
        )
        self.stream(fl_ctx, state.rnd.round_index, metrics)
        return round_reply(state, n_train=self.n_train(), metrics=metrics, metadata=self._metadata)

    def _validate(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        dxo, _ = model_dxo(shareable)
        owner = shareable.get_header(AppConstants.MODEL_OWNER, "?")
        metrics = clean_metrics(self.runner.validate(dxo.data, n_bootstrap=self.n_bootstrap))
        self.log_info(fl_ctx, f"validated model of {owner}: accuracy={metrics.get(C.M_ACCURACY)}")
        return DXO(data_kind=DataKind.METRICS, data=metrics).to_shareable()

    def _extra_handler(self, name: str) -> Handler:
        """A task's own step (e.g. ``fed_stats``): DXO data in, a COLLECTION DXO or OK out."""

        def handle(shareable: Shareable, fl_ctx: FLContext) -> Shareable:
            fn = self.runner.site.extra_tasks()[name]
            is_dxo = shareable.get_header(ReservedHeaderKey.CONTENT_TYPE) == "DXO"
            data = from_shareable(shareable).data if is_dxo else {}
            out = fn(data or {})
            if out is None:
                return make_reply(ReturnCode.OK)
            self.log_info(fl_ctx, f"sending {sorted(out)} (aggregates of {self.n_train()} training rows)")
            return DXO(data_kind=DataKind.COLLECTION, data=out).to_shareable()

        return handle

    def submit_model(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        """This site's locally trained weights of the last round, for cross-site evaluation."""
        weights = self.runner.local_weights if self.runner is not None else None
        if weights is None:
            return make_reply(ReturnCode.EMPTY_RESULT)
        return DXO(data_kind=DataKind.WEIGHTS, data=weights).to_shareable()

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
