"""FLARE's histogram-based XGBoost workflow with the collectives served on 127.0.0.1 instead of 0.0.0.0.

``XGBFedController`` hands its ``GrpcServerAdaptor`` an ``XGBServerRunner``, which runs XGBoost's C++
federated tracker: insecure gRPC on ``0.0.0.0:port`` for the whole training, and no way to stop it
before the job process exits. Everything else in that workflow already stays on the loopback interface
(the adaptor connects to ``127.0.0.1:port``), so :class:`LoopbackXGBController` swaps only the runner:
:class:`LoopbackXGBServerRunner` serves the same protocol with
:class:`fedhealth.workflows.xgb_tracker.LoopbackTracker`, bound to the adaptor's own loopback address.

XGBoost's federated protocol has no shutdown call, so the runner serves until FLARE stops it: the
controller decides training is over when every site reports its XGBoost process done, then
``stop_controller`` stops the adaptor, which stops the runner. Secure (HE) training is refused: its
plugins are loaded by XGBoost's own tracker.

FLARE's controller also ends its boosting by triggering the abort signal it was given, which is the
run's: every workflow after it (collecting the model, cross-site evaluation) would see an aborted run and
skip its work. :class:`LoopbackXGBController` hands it a child signal instead: an admin's abort or a
system panic still stops the boosting; the end of the boosting no longer stops the job.
"""

from __future__ import annotations

import threading
from typing import Any

from nvflare.apis.fl_context import FLContext
from nvflare.apis.signal import Signal
from nvflare.app_opt.xgboost.histogram_based_v2.adaptors.xgb_adaptor import XGBServerAdaptor
from nvflare.app_opt.xgboost.histogram_based_v2.defs import Constant
from nvflare.app_opt.xgboost.histogram_based_v2.fed_controller import XGBFedController
from nvflare.app_opt.xgboost.histogram_based_v2.runners.xgb_runner import AppRunner
from nvflare.fuel.utils.log_utils import get_obj_logger

from fedhealth.constants import EVENT_SITE_FAILED, PROP_SITE_FAILURE
from fedhealth.workflows.ehr_alignment_controller import aligned_sites
from fedhealth.workflows.xgb_tracker import DEFAULT_TIMEOUT, LoopbackTracker


class LoopbackXGBServerRunner(AppRunner):
    """Serves XGBoost's collectives on the adaptor's ``127.0.0.1:port`` until :meth:`stop`.

    Args:
        timeout: seconds a site's collective waits for the other sites before it fails.
    """

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.logger = get_obj_logger(self)
        self._lock = threading.Lock()
        self._tracker: LoopbackTracker | None = None
        self._stop_requested = False
        self._stopped = False

    def run(self, ctx: dict) -> None:
        """Listen on ``ctx[RUNNER_CTX_SERVER_ADDR]``; block until stopped (FLARE calls this in a thread)."""
        host, _, port = str(ctx[Constant.RUNNER_CTX_SERVER_ADDR]).rpartition(":")
        world_size = int(ctx[Constant.RUNNER_CTX_WORLD_SIZE])
        tracker = LoopbackTracker(world_size, int(port), host=host, timeout=self.timeout)
        with self._lock:
            if not self._stop_requested:
                tracker.start()
                self._tracker = tracker
        if self._tracker is tracker:
            self.logger.info(
                f"XGBoost collectives for {world_size} sites on {tracker.address} (loopback only)"
            )
            tracker.wait_for_termination()
            stats = tracker.stats()
            traffic = [(r["bytes_received"], r["bytes_sent"]) for r in stats["ranks"]]
            self.logger.info(
                f"XGBoost tracker stopped after {stats['ops']} collectives ({stats['errors']} failed); "
                f"payload bytes (from, to) each rank: {traffic}"
            )
        self._stopped = True

    def missing_ranks(self) -> list[int]:
        """The ranks whose collective never arrived (empty before the tracker runs)."""
        return self._tracker.missing_ranks() if self._tracker is not None else []

    def stop(self) -> None:
        with self._lock:
            self._stop_requested = True
            tracker = self._tracker
        if tracker is not None:
            tracker.stop()

    def is_stopped(self) -> tuple[bool, int]:
        return self._stopped, 0


class LoopbackXGBController(XGBFedController):
    """``XGBFedController`` whose XGBoost tracker listens on 127.0.0.1 only, and whose end ends only itself.

    Takes ``XGBFedController``'s arguments (by keyword after ``xgb_params``), plus:

    Args:
        collective_timeout: seconds one site's collective waits for the other sites before it fails.

    Raises:
        ValueError: ``secure_training`` is true, or ``collective_timeout`` is not positive.
    """

    def __init__(
        self,
        num_rounds: int,
        data_split_mode: int,
        secure_training: bool,
        xgb_params: dict,
        *,
        collective_timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        if secure_training:
            raise ValueError(
                "LoopbackXGBController does not support secure_training: the homomorphic-encryption "
                "plugins run inside XGBoost's own tracker. Use nvflare's XGBFedController for secure "
                "training, which exposes an insecure gRPC port on 0.0.0.0 for the whole run."
            )
        if collective_timeout <= 0:
            raise ValueError(f"collective_timeout must be > 0 seconds, got {collective_timeout}.")
        super().__init__(
            num_rounds=num_rounds,
            data_split_mode=data_split_mode,
            secure_training=False,
            xgb_params=xgb_params,
            **kwargs,
        )
        self.collective_timeout = collective_timeout
        self._runner: LoopbackXGBServerRunner | None = None

    def start_controller(self, fl_ctx: FLContext) -> None:
        """FLARE's start, on the sites the feature alignment accepted (all participants without one)."""
        super().start_controller(fl_ctx)
        sites = aligned_sites(fl_ctx)
        if sites is None or self.participating_clients is None:
            return
        left_out = [c for c in self.participating_clients if c not in sites]
        self.participating_clients = [c for c in self.participating_clients if c in sites]
        for site in left_out:
            self.client_statuses.pop(site, None)
        if left_out:
            self.log_warning(
                fl_ctx,
                f"boosting on {self.participating_clients}; {left_out} did not take part in the feature "
                "alignment and hold no schema",
            )

    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        """FLARE's boosting under a child of the run's abort signal (the workflows after it still run).

        A site whose histograms stopped coming (its process died, its link dropped) stops the boosting:
        every site needs every other site's sums for every node. Such a site is named in the run record
        (``fedhealth.site_failed``) with the collective it missed.
        """
        super().control_flow(Signal(parent=abort_signal), fl_ctx)
        runner = self._runner
        missing = runner.missing_ranks() if runner is not None else []
        sites = {rank: site for site, rank in (self.client_ranks or {}).items()}
        for rank in missing:
            failure = {
                "site": sites.get(rank, f"rank {rank}"),
                "task": "xgboost",
                "reason": (
                    f"its histograms did not reach the server within {self.collective_timeout:g} s; "
                    "histogram boosting needs every site in every round, so the boosting stopped"
                ),
            }
            self.log_error(fl_ctx, f"site {failure['site']}: {failure['reason']}")
            fl_ctx.set_prop(PROP_SITE_FAILURE, failure, private=True, sticky=False)
            self.fire_event(EVENT_SITE_FAILED, fl_ctx)

    def get_adaptor(self, fl_ctx: FLContext) -> XGBServerAdaptor:
        """FLARE's own adaptor and security handler, the loopback runner in place of XGBoost's tracker."""
        adaptor = super().get_adaptor(fl_ctx)
        runner = LoopbackXGBServerRunner(timeout=self.collective_timeout)
        runner.initialize(fl_ctx)
        adaptor.set_runner(runner)
        self._runner = runner
        return adaptor
