"""A Flower 1.42 SuperNode's Fleet HTTP API, relayed as FLARE's grpc-adapter messages.

FLARE 2.9's Flower integration was built for SuperNodes that speak the ``grpc-adapter`` transport
(``flower-supernode --grpc-adapter``): FLARE's site connector serves that gRPC service locally and
relays each ``MessageContainer`` to the server, where FLARE hands it to the SuperLink's
grpc-adapter Fleet API. Flower 1.42's SuperNode has no such transport any more: it speaks the Fleet
API as protobuf over HTTP (``POST /v1/fleet/<call>``, body and reply one serialized protobuf each,
``flwr.supernode.fleet_http_client``). The SuperLink still serves the grpc-adapter Fleet API.

:class:`FleetBridge` closes the gap at the site: a small HTTP server on 127.0.0.1 that takes the
SuperNode's calls and gives each to ``relay(name, body)`` as the grpc-adapter message FLARE relays
(``name`` is the request's protobuf type, e.g. ``GetFabRequest``), and answers with the reply's
bytes. ``relay`` returns ``None`` when the site stops the Flower run (FLARE's "should exit"); the
SuperNode then gets HTTP 503. Standard library only (no FLARE, no Flower import).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROTOBUF = "application/protobuf"
PREFIX = "/v1/fleet/"
MAX_BODY = 2 * 1024 * 1024 * 1024  # FLARE's relay carries the real limit; this only guards the header
# The Fleet HTTP API's calls (flwr 1.42) and the protobuf request type the grpc-adapter names each by.
CALLS = {
    "register-node": "RegisterNodeFleetRequest",
    "activate-node": "ActivateNodeRequest",
    "deactivate-node": "DeactivateNodeRequest",
    "unregister-node": "UnregisterNodeFleetRequest",
    "send-node-heartbeat": "SendNodeHeartbeatRequest",
    "pull-messages": "PullMessagesRequest",
    "push-messages": "PushMessagesRequest",
    "get-run": "GetRunRequest",
    "get-fab": "GetFabRequest",
    "push-object": "PushObjectRequest",
    "pull-object": "PullObjectRequest",
    "confirm-message-received": "ConfirmMessageReceivedRequest",
}
Relay = Callable[[str, bytes], "bytes | None"]


class FleetBridge:
    """The HTTP side of the bridge; start it, give its :attr:`address` to the SuperNode, stop it.

    Args:
        relay: ``(request type name, request bytes) -> reply bytes`` (``None``: the run stops).
        host: where to listen (loopback: only the site's own SuperNode talks to it).
    """

    def __init__(self, relay: Relay, *, host: str = "127.0.0.1") -> None:
        self.relay = relay
        self.calls: dict[str, int] = {}
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                bridge._serve(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                return

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """``host:port`` for ``flower-supernode --superlink``."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fleet-bridge", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        call = handler.path[len(PREFIX) :] if handler.path.startswith(PREFIX) else None
        name = CALLS.get(call or "")
        length = int(handler.headers.get("content-length") or 0)
        if name is None or not 0 <= length <= MAX_BODY:
            self._answer(handler, 404, b"unknown Fleet call")
            return
        body = handler.rfile.read(length)
        self.calls[call] = self.calls.get(call, 0) + 1
        try:
            reply = self.relay(name, body)
        except Exception as exc:  # the relay failed: the SuperNode sees a server error and retries or stops
            self._answer(handler, 502, f"relay failed: {type(exc).__name__}".encode())
            return
        if reply is None:
            self._answer(handler, 503, b"the site stopped this Flower run")
            return
        self._answer(handler, 200, reply, PROTOBUF)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str = "text/plain") -> None:
        handler.send_response(status)
        handler.send_header("content-type", kind)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
