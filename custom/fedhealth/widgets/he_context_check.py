"""Stops an HE job at start, with the file named, when a kit's TenSEAL context is unusable.

FLARE's HE filters load their context on ``START_RUN`` too, but only log a failure there and raise
again on the first encrypted message, in the middle of a round. This component checks the context
first (present, signed by the project, parseable, CKKS, secret key only at the sites) and ends the
job before any training:

- at the server, a bad ``server_context.tenseal`` aborts the run (``system_panic``) with the reason;
- at a site, a bad ``client_context.tenseal`` stops that site and sends the reason to the server as
  a federation event, where this same component aborts the run naming the site and the file.

The reason lands in the run record (``abort_reason``), which ``fedhealth demo`` and the run report
show.
"""

from __future__ import annotations

import os
import threading
import time

from nvflare.apis.event_type import EventType
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_constant import FedEventHeader, FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.server_engine_spec import ServerEngineSpec
from nvflare.apis.shareable import Shareable
from nvflare.fuel.sec.security_content_service import SecurityContentService
from nvflare.widgets.widget import WidgetID

from fedhealth import constants as C
from fedhealth.he.context import HEContextError, check_context, describe_context

HEADER_REASON = "fedhealth_he_reason"
READY_TIMEOUT_S = 30.0


class HEContextCheck(FLComponent):
    """Check this participant's TenSEAL context on ``START_RUN``.

    Args:
        context_file: the context's name in the kit's ``startup/`` folder; defaults to FLARE's
            ``server_context.tenseal`` at the server and ``client_context.tenseal`` at a site.
    """

    def __init__(self, *, context_file: str | None = None) -> None:
        super().__init__()
        if context_file is not None and (not context_file or os.path.basename(context_file) != context_file):
            raise ValueError(
                f"context_file must be a file name in the kit's startup folder, got {context_file!r}."
            )
        self.context_file = context_file
        self.info: dict | None = None

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.START_RUN:
            self._check(fl_ctx)
        elif event_type == C.EVENT_HE_CONTEXT_ERROR and self._is_server(fl_ctx):
            data = fl_ctx.get_prop(FLContextKey.EVENT_DATA, None)
            if isinstance(data, Shareable):
                site = data.get_header(FedEventHeader.ORIGIN, None) or "a site"
                reason = data.get_header(HEADER_REASON, "its TenSEAL context is unusable")
                self.system_panic(f"site {site}: {reason}", fl_ctx)

    def _stop_site(self, engine, reason: str) -> None:
        """Tell the server why, then stop this site's run.

        Runs in a thread: during START_RUN the site's federation-event runner is not ready yet
        (FLARE dispatches START_RUN to job components before its own widgets).
        """
        runner = engine.get_widget(WidgetID.FED_EVENT_RUNNER)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while runner is not None and not getattr(runner, "ready", True) and time.monotonic() < deadline:
            time.sleep(0.05)
        with engine.new_context() as fl_ctx:
            event = Shareable()
            event.set_header(HEADER_REASON, reason)
            self.fire_fed_event(C.EVENT_HE_CONTEXT_ERROR, event, fl_ctx)
            time.sleep(1.0)  # let the event leave before the site's run stops
            self.system_panic(reason, fl_ctx)

    @staticmethod
    def _is_server(fl_ctx: FLContext) -> bool:
        return isinstance(fl_ctx.get_engine(), ServerEngineSpec)

    def _check(self, fl_ctx: FLContext) -> None:
        server = self._is_server(fl_ctx)
        name = self.context_file or (C.HE_SERVER_CONTEXT_FILE if server else C.HE_SITE_CONTEXT_FILE)
        folder = SecurityContentService.content_folder or "startup"
        path = os.path.join(folder, name)
        data, status = SecurityContentService.load_content(name)
        try:
            context = check_context(
                data,
                path=path,
                load_status=getattr(status, "value", str(status)),
                expect_secret_key=not server,
                secure=bool(fl_ctx.get_prop(FLContextKey.SECURE_MODE, True)),
            )
        except HEContextError as exc:
            reason = f"{exc} The HE job cannot run."
            self.log_error(fl_ctx, reason)
            if server:
                self.system_panic(reason, fl_ctx)
            else:
                engine = fl_ctx.get_engine()
                threading.Thread(target=self._stop_site, args=(engine, reason), daemon=True).start()
            return
        self.info = describe_context(context)
        self.log_info(fl_ctx, f"TenSEAL context {path} checked: {self.info}")
