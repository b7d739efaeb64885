"""XGBoost's federated collective service in Python, listening on 127.0.0.1 only.

FLARE 2.9's histogram-based XGBoost runs, inside the server's job process, XGBoost's C++ federated
tracker (``xgboost.federated.run_federated_server``), which listens on ``0.0.0.0:port`` with insecure
gRPC for the whole training: any host on the server's network could join as a worker, inject gradient
histograms or read the aggregated ones, and nothing stops it before the job process exits. The only
legitimate client is FLARE's own bridge, :class:`GrpcServerAdaptor`, which connects to
``127.0.0.1:port``. :class:`LoopbackTracker` serves the same protocol
(``xgboost.collective.federated.Federated``: Allgather, AllgatherV, Allreduce, Broadcast) on the
loopback interface, reduces in rank order (:mod:`fedhealth.trees.collective`), gives up on a missing
rank after ``timeout`` seconds with a gRPC error that names it, and counts the bytes each rank sends and
receives, which is what leaves and reaches each site.

The protocol has no handshake and no shutdown: a worker's first request is its first collective, and a
worker that finishes simply stops calling. The tracker therefore serves until :meth:`LoopbackTracker.stop`.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import nvflare.app_opt.xgboost.histogram_based_v2.proto.federated_pb2 as pb2
from nvflare.app_opt.xgboost.histogram_based_v2.defs import GRPC_DEFAULT_OPTIONS
from nvflare.app_opt.xgboost.histogram_based_v2.proto.federated_pb2_grpc import (
    FederatedServicer,
    add_FederatedServicer_to_server,
)

from fedhealth.trees import collective

LOOPBACK = "127.0.0.1"
DEFAULT_TIMEOUT = 300.0  # seconds a rank waits for the others at one collective
# FLARE's message limits, and no SO_REUSEPORT: a second process must not be able to share the port.
GRPC_OPTIONS = [*GRPC_DEFAULT_OPTIONS, ("grpc.so_reuseport", 0)]
_Context = grpc.ServicerContext


@dataclass(frozen=True)
class OpRecord:
    """One completed collective, for per-round accounting.

    ``completed_at`` is ``time.monotonic()``, which on Linux is one clock for all processes of a host,
    so a worker's timestamps can bin the records into boosting rounds.
    """

    seq: int
    op: str
    completed_at: float
    received: tuple[int, ...]  # payload bytes from each rank, in rank order
    sent: int  # payload bytes of the reply, the same for every rank


@dataclass
class _Round:
    op: str
    signature: str  # the operation and its arguments, which every rank must send alike
    requests: dict[int, bytes] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    reply: bytes = b""
    error: tuple[grpc.StatusCode, str] | None = None
    answered: int = 0


class LoopbackTracker:
    """The federated collective service for ``world_size`` XGBoost workers on ``127.0.0.1:port``.

    Args:
        world_size: number of ranks (sites) that take part in every collective.
        port: TCP port; 0 lets the system pick one (:meth:`start` returns it).
        host: must be ``"127.0.0.1"``; anything else is refused.
        timeout: seconds a rank waits for the missing ranks before its call fails.
    """

    def __init__(
        self, world_size: int, port: int = 0, *, host: str = LOOPBACK, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if host != LOOPBACK:
            raise ValueError(
                f"The XGBoost tracker binds to {LOOPBACK} only, got host {host!r}: its gRPC port is "
                "unauthenticated, so any host that can reach it could join the training as a worker, "
                "inject gradient histograms or read the aggregated ones."
            )
        if world_size < 1:
            raise ValueError(f"world_size must be at least 1, got {world_size}.")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}.")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}.")
        self.world_size = world_size
        self.host = host
        self.port = port
        self.timeout = timeout
        self._lock = threading.Lock()
        self._rounds: dict[int, _Round] = {}
        self._records: list[OpRecord] = []
        self._received = [0] * world_size
        self._sent = [0] * world_size
        self._answered = [0] * world_size
        self._errors = 0
        self._missing: set[int] = set()  # ranks that failed to arrive for a collective (a dropped site)
        self._server: grpc.Server | None = None
        self._pool: futures.ThreadPoolExecutor | None = None
        self._stopping = False

    @property
    def address(self) -> str:
        """``host:port`` for ``federated_server_address`` (the bound port once started)."""
        return f"{self.host}:{self.port}"

    def start(self) -> int:
        """Listen and serve in background threads; returns the bound port."""
        if self._server is not None:
            raise RuntimeError(f"The tracker already serves on {self.address}.")
        # A waiting rank holds a thread: room for every rank of two overlapping sequence numbers.
        pool = futures.ThreadPoolExecutor(2 * self.world_size + 4, thread_name_prefix="xgb-tracker")
        server = grpc.server(pool, options=GRPC_OPTIONS)
        add_FederatedServicer_to_server(_Servicer(self), server)
        try:
            port = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError as e:  # grpc >= 1.49 raises where older versions returned 0
            port, cause = 0, e
        else:
            cause = None
        if not port:
            pool.shutdown()
            raise RuntimeError(f"The XGBoost tracker cannot listen on {self.host}:{self.port}.") from cause
        self.port = port
        server.start()
        self._server, self._pool = server, pool
        return port

    def stop(self, grace: float = 0.5) -> None:
        """Fail the collectives still waiting (``UNAVAILABLE``), close the port, end the threads."""
        with self._lock:
            self._stopping = True
            for rnd in self._rounds.values():
                self._fail(rnd, grpc.StatusCode.UNAVAILABLE, f"the tracker on {self.address} is stopping")
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()
            self._pool.shutdown(wait=True)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (True) or ``timeout`` seconds (False)."""
        server = self._server
        return True if server is None else server.wait_for_termination(timeout)

    def stats(self) -> dict:
        """Completed collectives and payload bytes per rank (requests' and replies' buffers, no framing)."""
        with self._lock:
            by_op: dict[str, int] = {}
            for rec in self._records:
                by_op[rec.op] = by_op.get(rec.op, 0) + 1
            return {
                "world_size": self.world_size,
                "ops": len(self._records),
                "by_op": by_op,
                "errors": self._errors,
                "ranks": [
                    {"bytes_received": r, "bytes_sent": s, "ops": n}
                    for r, s, n in zip(self._received, self._sent, self._answered, strict=True)
                ],
            }

    def missing_ranks(self) -> list[int]:
        """Ranks that did not send a collective in time (the sites that dropped out), sorted."""
        with self._lock:
            return sorted(self._missing)

    def records(self) -> list[OpRecord]:
        """Every completed collective, in completion order."""
        with self._lock:
            return list(self._records)

    def collect(self, op: str, request: object, context: grpc.ServicerContext) -> bytes:
        """Serve one rank's request: wait for the other ranks' same-numbered request, answer all of them."""
        rank, seq, data = request.rank, request.sequence_number, request.send_buffer
        signature = _signature(op, request)
        if not 0 <= rank < self.world_size:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"rank {rank} is not in 0..{self.world_size - 1}")
        with self._lock:
            if self._stopping:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"the tracker on {self.address} is stopping")
            self._received[rank] += len(data)
            rnd = self._rounds.setdefault(seq, _Round(op, signature))
            if rank in rnd.requests:
                self._errors += 1
                duplicate = f"rank {rank} sent {op} #{seq} twice"
            else:
                duplicate = ""
                self._join(rnd, signature, request)
        if duplicate:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, duplicate)
        rnd.done.wait(self.timeout)
        with self._lock:
            if not rnd.done.is_set():
                missing = sorted(set(range(self.world_size)) - set(rnd.requests))
                self._missing.update(missing)
                self._fail(
                    rnd,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{rnd.signature} #{seq}: rank(s) {missing} did not arrive within {self.timeout:g} s",
                )
            error, reply = rnd.error, rnd.reply
            rnd.answered += 1
            if error is None:
                self._sent[rank] += len(reply)
                self._answered[rank] += 1
            if rnd.answered == len(rnd.requests) and self._rounds.get(seq) is rnd:
                del self._rounds[seq]  # a later session may reuse the number
        if error is not None:
            context.abort(*error)
        return reply

    def _join(self, rnd: _Round, signature: str, request: object) -> None:
        """Add a request to its round (lock held); the last rank to arrive computes the reply for all."""
        seq, rank, op = request.sequence_number, request.rank, rnd.op
        rnd.requests[rank] = request.send_buffer
        if rnd.error is not None:
            return
        if signature != rnd.signature:
            others = sorted(set(rnd.requests) - {rank})
            message = f"#{seq}: rank {rank} sent {signature}, rank(s) {others} {rnd.signature}"
            self._fail(rnd, grpc.StatusCode.FAILED_PRECONDITION, message)
            return
        if len(rnd.requests) < self.world_size:
            return
        buffers = [rnd.requests[r] for r in range(self.world_size)]
        try:
            if op == "Allreduce":
                rnd.reply = collective.reduce(buffers, request.data_type, request.reduce_operation)
            elif op == "Broadcast":
                rnd.reply = collective.broadcast(buffers, request.root)
            else:
                rnd.reply = collective.gather(buffers)
        except collective.CollectiveError as e:
            self._fail(rnd, grpc.StatusCode.INVALID_ARGUMENT, f"{op} #{seq}: {e}")
            return
        sizes = tuple(len(b) for b in buffers)
        self._records.append(OpRecord(seq, op, time.monotonic(), sizes, len(rnd.reply)))
        rnd.done.set()

    def _fail(self, rnd: _Round, code: grpc.StatusCode, message: str) -> None:
        if rnd.error is None and not rnd.done.is_set():
            rnd.error = (code, f"XGBoost tracker: {message}")
            self._errors += 1
            rnd.done.set()


def _signature(op: str, request: object) -> str:
    """What every rank of one collective must agree on: the operation and its arguments."""
    if op == "Allreduce":
        dtype, reduce_op = request.data_type, request.reduce_operation
        return f"{op}({collective.DTYPES.get(dtype, dtype)}, {collective.OP_NAMES.get(reduce_op, reduce_op)})"
    return f"{op}(root={request.root})" if op == "Broadcast" else op


class _Servicer(FederatedServicer):
    """The generated service's four methods, each one call of :meth:`LoopbackTracker.collect`."""

    def __init__(self, tracker: LoopbackTracker) -> None:
        self._tracker = tracker

    def Allgather(self, request: pb2.AllgatherRequest, context: _Context) -> pb2.AllgatherReply:  # noqa: N802
        return pb2.AllgatherReply(receive_buffer=self._tracker.collect("Allgather", request, context))

    def AllgatherV(self, request: pb2.AllgatherVRequest, context: _Context) -> pb2.AllgatherVReply:  # noqa: N802
        return pb2.AllgatherVReply(receive_buffer=self._tracker.collect("AllgatherV", request, context))

    def Allreduce(self, request: pb2.AllreduceRequest, context: _Context) -> pb2.AllreduceReply:  # noqa: N802
        return pb2.AllreduceReply(receive_buffer=self._tracker.collect("Allreduce", request, context))

    def Broadcast(self, request: pb2.BroadcastRequest, context: _Context) -> pb2.BroadcastReply:  # noqa: N802
        return pb2.BroadcastReply(receive_buffer=self._tracker.collect("Broadcast", request, context))
