"""Federated feature statistics: one global scaling, no patient row leaves a site.

Each site sends per-feature counts, sums and sums of squares of its training features; the
server adds them into a global mean and standard deviation and sends those back. FLamby scales
each hospital by its own statistics instead, which hides real differences between hospitals.
"""

from __future__ import annotations

import json
from pathlib import Path

from nvflare.apis.controller_spec import ClientTask, Task
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal

from fedhealth.constants import (
    HEADER_ERROR,
    S_COUNT,
    S_FEATURES,
    S_SUM,
    S_SUMSQ,
    SCALING_STATE_FILE,
    TASK_FED_STATS,
    TASK_SET_SCALING,
)
from fedhealth.data.features import combine_moments
from fedhealth.workflows.step_controller import StepController


def task_failures(client_tasks: list[ClientTask]) -> list[str]:
    """Each site's reason for a failed task (its ``fedhealth_error`` header, else the return code)."""
    failures = []
    for ct in client_tasks:
        rc = ct.result.get_return_code(ReturnCode.OK) if ct.result is not None else "NO_RESULT"
        if rc != ReturnCode.OK:
            reason = ct.result.get_header(HEADER_ERROR, None) if ct.result is not None else None
            failures.append(reason or f"site {ct.client.name} returned {rc}")
    return failures


class FedStatsController(StepController):
    """Collects feature moments from every site and broadcasts the global scaling.

    Args:
        min_clients: sites that must answer; fewer ends the job with the reasons of those that failed.
        task_timeout: seconds to wait for the sites.
    """

    def __init__(self, *, min_clients: int = 2, task_timeout: int = 120) -> None:
        super().__init__()
        if min_clients < 1:
            raise ValueError(f"min_clients must be at least 1, got {min_clients}.")
        self.min_clients = min_clients
        self.task_timeout = task_timeout
        self.global_stats: dict | None = None

    def start_controller(self, fl_ctx: FLContext) -> None:
        self.log_info(fl_ctx, "federated statistics: waiting for sites")

    def _broadcast(
        self,
        name: str,
        data: Shareable,
        fl_ctx: FLContext,
        abort_signal: Signal,
        *,
        targets: list[str] | None = None,
        wait_after_min: int = 0,
    ) -> list[ClientTask]:
        task = Task(name=name, data=data, timeout=self.task_timeout)
        self.broadcast_and_wait(
            task,
            fl_ctx,
            targets=targets,
            min_responses=self.min_clients,
            wait_time_after_min_received=wait_after_min,
            abort_signal=abort_signal,
        )
        return task.client_tasks

    def _failures(self, client_tasks: list[ClientTask]) -> list[str]:
        return task_failures(client_tasks)

    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        client_tasks = self._broadcast(TASK_FED_STATS, Shareable(), fl_ctx, abort_signal)
        if abort_signal.triggered:
            return
        failures = self._failures(client_tasks)
        moments, names = [], None
        for ct in client_tasks:
            if ct.result is None or ct.result.get_return_code(ReturnCode.OK) != ReturnCode.OK:
                continue
            data = from_shareable(ct.result).data
            if names is not None and list(data[S_FEATURES]) != names:
                failures.append(f"site {ct.client.name} encodes different features than the other sites")
                continue
            names = list(data[S_FEATURES])
            moments.append({k: data[k] for k in (S_COUNT, S_SUM, S_SUMSQ)})
        if failures or len(moments) < self.min_clients:
            reason = "; ".join(failures) or f"only {len(moments)} of {self.min_clients} sites answered"
            self.system_panic(f"federated statistics failed: {reason}", fl_ctx)
            return
        self.global_stats = {**combine_moments(moments), S_FEATURES: names}
        self.log_info(fl_ctx, f"global scaling from {len(moments)} sites over {len(names)} features")
        # Kept with the run (downloaded with the result): a new site needs it to use the model.
        run_dir = Path(fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()))
        (run_dir / SCALING_STATE_FILE).write_text(json.dumps(self.global_stats, indent=2))
        acks = self._broadcast(
            TASK_SET_SCALING,
            DXO(DataKind.COLLECTION, data=self.global_stats).to_shareable(),
            fl_ctx,
            abort_signal,
        )
        failures = self._failures(acks)
        if failures:
            self.system_panic(f"sites could not take the global scaling: {'; '.join(failures)}", fl_ctx)
