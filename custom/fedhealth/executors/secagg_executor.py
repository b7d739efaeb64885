"""A site's SecAgg+ protocol tasks in FLARE: key advertisement, key sharing, unmasking answers.

Thin FLARE glue over :class:`fedhealth.secagg.site.SecAggSite`. On ``START_RUN`` the site's signing
identity is read from its own startup kit (``client.key``, ``client.crt``, ``rootCA.pem``: what
FLARE provisioning wrote), and the protocol state for the job is registered, so the ``train``
task's filter (:class:`fedhealth.filters.secagg_mask.SecAggMask`) masks with the same keys. The
job's client config sets the SecAgg settings; a server request that disagrees with them is refused.
A refused request (forged, replayed, too few survivors) answers ``EXECUTION_EXCEPTION`` with the
reason in the ``fedhealth_error`` header; nothing secret is in it.
"""

from __future__ import annotations

from pathlib import Path

from nvflare.apis.dxo import DXO, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal

from fedhealth import constants as C
from fedhealth.secagg.config import SecAggConfig
from fedhealth.secagg.identity import Identity
from fedhealth.secagg.site import SecAggSite

_SITES: dict[
    str, SecAggSite
] = {}  # job id -> this site's protocol state (the executor and the filter share it)


def site_for(job_id: str) -> SecAggSite:
    """The protocol state of ``job_id`` at this site; ``ValueError`` if the job runs no SecAggExecutor."""
    site = _SITES.get(job_id)
    if site is None:
        raise ValueError(
            "this job masks updates but its SecAgg+ executor did not start at this site (list "
            "fedhealth.executors.secagg_executor.SecAggExecutor for the secagg tasks)"
        )
    return site


class SecAggExecutor(Executor):
    """Answers ``secagg_advertise``, ``secagg_share_keys`` and ``secagg_unmask``.

    Args:
        max_norm: L2 bound this site clips its update to before masking.
        bits: the ring's width, 32 to 64 in whole bytes (each byte more rounds 256 times finer).
        max_sites: the most sites a round may hold.
        max_weight: the largest FedAvg weight (training rows) a site may send.
        threshold: shares that recover a secret (None: a majority of the neighbours).
        neighbors: neighbours per site (None: all other sites).
    """

    def __init__(
        self,
        *,
        max_norm: float,
        bits: int = 40,
        max_sites: int = 16,
        max_weight: float = 10_000.0,
        threshold: int | None = None,
        neighbors: int | None = None,
    ) -> None:
        super().__init__()
        self.config = SecAggConfig(
            max_norm=float(max_norm),
            bits=int(bits),
            max_sites=int(max_sites),
            max_weight=float(max_weight),
            threshold=threshold,
            neighbors=neighbors,
        )
        self._error: str | None = None

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        job = fl_ctx.get_job_id()
        if event_type == EventType.START_RUN:
            name = fl_ctx.get_identity_name()
            startup = Path(fl_ctx.get_engine().get_workspace().get_startup_kit_dir())
            try:
                identity = Identity.from_startup_kit(startup, name)
                _SITES[job] = SecAggSite(name=name, job=job, config=self.config, identity=identity)
            except ValueError as exc:
                self._error = str(exc)
                self.log_error(fl_ctx, f"SecAgg+ cannot start: {exc}")
        elif event_type == EventType.END_RUN:
            _SITES.pop(job, None)

    def execute(
        self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal
    ) -> Shareable:
        if task_name not in C.SECAGG_TASKS:
            return make_reply(ReturnCode.TASK_UNKNOWN)
        try:
            site = site_for(fl_ctx.get_job_id())
            request = dict(from_shareable(shareable).data)
            if task_name == C.TASK_SECAGG_ADVERTISE:
                answer = site.advertise(**request)
            elif task_name == C.TASK_SECAGG_SHARE_KEYS:
                answer = site.share_keys(**request)
            else:
                answer = site.reveal(**request)
        except (ValueError, TypeError, KeyError) as exc:
            reason = self._error or str(exc)
            message = f"site {fl_ctx.get_identity_name()} refused {task_name!r}: {reason}"
            self.log_error(fl_ctx, message)
            reply = make_reply(ReturnCode.EXECUTION_EXCEPTION)
            reply.set_header(C.HEADER_ERROR, message)
            return reply
        self.log_info(fl_ctx, f"{task_name}: answered (key epoch {site.epoch.number})")
        return DXO(data_kind=C.SECAGG_MESSAGE_KIND, data=answer).to_shareable()
