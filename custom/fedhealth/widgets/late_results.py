"""Results that come after the server closed their task: who, which round, during which, what became of them.

FLARE's server hands a result it has no open task for to the workflow's
``process_result_of_unknown_task``, between the events ``BEFORE_PROCESS_RESULT_OF_UNKNOWN_TASK`` and
``AFTER_PROCESS_RESULT_OF_UNKNOWN_TASK`` (``nvflare/apis/impl/wf_comm_server.py``). ScatterAndGather
passes a late train result to its aggregator (``_accept_train_result``), which takes it only if it
was trained for the round in progress; the kit's own workflows log and ignore it
(:class:`~fedhealth.workflows.step_controller.StepController`). :class:`LateResults` follows one such
result through those events (by its client task id) and gives the run record its
:class:`~fedhealth.reports.run_record.LateResult`.
"""

from __future__ import annotations

import threading

from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_constant import FLContextKey, ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import ReservedHeaderKey, Shareable
from nvflare.app_common.app_constant import AppConstants

from fedhealth.constants import META_SITE_METRICS
from fedhealth.reports.run_record import LateResult

IGNORED = "the workflow had closed its task and ignored it"
REFUSED = "the aggregator refused it"


class LateResults:
    """The late results being handled now, by client task id (each submission has its own thread)."""

    def __init__(self) -> None:
        self._pending: dict[str | None, LateResult] = {}
        self._lock = threading.Lock()

    def start(self, fl_ctx: FLContext, *, during_round: int | None) -> None:
        """``BEFORE_PROCESS_RESULT_OF_UNKNOWN_TASK``: note the result and the round in progress."""
        result = fl_ctx.get_prop(FLContextKey.TASK_RESULT)
        if not isinstance(result, Shareable):
            return
        late = LateResult(
            site=result.get_peer_prop(ReservedKey.IDENTITY_NAME, None) or "unknown",
            task=result.get_header(ReservedHeaderKey.TASK_NAME, "") or "",
            round=result_round(result),
            during_round=during_round,
            used=False,
            reason="",
        )
        with self._lock:
            self._pending[task_id(fl_ctx)] = late

    def accepted(self, fl_ctx: FLContext) -> None:
        """``AFTER_CONTRIBUTION_ACCEPT``: whether the aggregator took the late result (if this is one)."""
        with self._lock:
            late = self._pending.get(task_id(fl_ctx))
            if late is not None:
                late["used"] = bool(fl_ctx.get_prop(AppConstants.AGGREGATION_ACCEPTED, False))
                if not late["used"] and not late["reason"]:
                    late["reason"] = REFUSED

    def rejected(self, fl_ctx: FLContext, reason: str) -> bool:
        """An aggregator's rejection: True if it was of a late result (its reason is kept with it)."""
        with self._lock:
            late = self._pending.get(task_id(fl_ctx))
            if late is None:
                return False
            late["reason"] = reason
            return True

    def end(self, fl_ctx: FLContext) -> LateResult | None:
        """``AFTER_PROCESS_RESULT_OF_UNKNOWN_TASK``: the finished record (None if none was started)."""
        with self._lock:
            late = self._pending.pop(task_id(fl_ctx), None)
        if late is not None and not late["used"] and not late["reason"]:
            late["reason"] = IGNORED
        return late


def task_id(fl_ctx: FLContext) -> str | None:
    """The client task id of the result in this context (FLARE's server sets it on each submission)."""
    result = fl_ctx.get_prop(FLContextKey.TASK_RESULT)
    return result.get_header(ReservedHeaderKey.TASK_ID, None) if isinstance(result, Shareable) else None


def result_round(result: Shareable) -> int | None:
    """The round a result was computed for: ScatterAndGather's cookie, else the site's round metrics."""
    rnd = result.get_cookie(AppConstants.CONTRIBUTION_ROUND, None)
    if rnd is None:
        try:
            metrics = from_shareable(result).get_meta_prop(META_SITE_METRICS, None) or {}
        except (ValueError, TypeError):  # an error reply carries no DXO
            metrics = {}
        rnd = metrics.get("round") if isinstance(metrics, dict) else None
    try:
        return None if rnd is None else int(rnd)
    except (TypeError, ValueError):
        return None
