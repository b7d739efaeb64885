"""LoopbackTracker: XGBoost's federated collectives on 127.0.0.1, proved by real XGBoost workers.

Three spawned processes train with XGBoost's own federated communicator against the tracker; their
models must be identical, equal to a centralized model on the pooled rows, and the tracker must have
listened on 127.0.0.1 and nowhere else.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import nvflare.app_opt.xgboost.histogram_based_v2.proto.federated_pb2 as pb2
import psutil
import pytest
import xgboost as xgb
from nvflare.app_opt.xgboost.histogram_based_v2.proto.federated_pb2_grpc import FederatedStub

from fedhealth.trees import collective
from fedhealth.workflows.xgb_tracker import LoopbackTracker
from fedhealth_tools.training.xgb_federated import run_federated_histogram

PARAMS = {"tree_method": "hist", "objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1}
ROUNDS = 10
SPLIT = (150, 200, 250)  # rows per site, unequal on purpose
NUMPY_TYPES = {
    "HALF": np.float16,
    "FLOAT": np.float32,
    "DOUBLE": np.float64,
    "LONG_DOUBLE": np.longdouble,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
}
ALLREDUCE = {"data_type": pb2.DOUBLE}
# (rank 0's (method, fields), rank 1's, the error both get)
DISAGREEMENTS = [
    (("Allgather", {}), ("Broadcast", {"root": 0}), "rank 1 sent Broadcast(root=0), rank(s) [0] Allgather"),
    (
        ("Allreduce", {**ALLREDUCE, "reduce_operation": pb2.SUM}),
        ("Allreduce", {**ALLREDUCE, "reduce_operation": pb2.MAX}),
        "rank 1 sent Allreduce(float64, MAX), rank(s) [0] Allreduce(float64, SUM)",
    ),
    (("Broadcast", {"root": 0}), ("Broadcast", {"root": 1}), "rank 1 sent Broadcast(root=1)"),
]
REFUSED_HOSTS = ["0.0.0.0", "::", "localhost", "192.168.1.10", ""]


def _table(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Six features with one decimal (fewer distinct values than max_bin), 10 % missing, a nonlinear label."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(sum(SPLIT), 6)), 1)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] * x[:, 3] + rng.normal(scale=0.5, size=len(x)) > 0).astype(float)
    x[rng.random(x.shape) < 0.1] = np.nan
    return x, y


def _ipv4(ip: str) -> str:
    """gRPC listens on IPv6 sockets: ``127.0.0.1`` shows as ``::ffff:127.0.0.1`` (IPv4-mapped)."""
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _listeners(pids: set[int]) -> set[tuple[str, int]]:
    """``(ip, port)`` of every listening TCP socket of these processes, IPv4-mapped ones as IPv4."""
    found = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        found |= {(_ipv4(c.laddr.ip), c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return found


def _other_addresses() -> list[tuple[int, str]]:
    """This host's non-loopback addresses (family, ip): where a worker on the network would connect."""
    return [
        (a.family, a.address)
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family in (socket.AF_INET, socket.AF_INET6)
        and "%" not in a.address
        and not ipaddress.ip_address(a.address).is_loopback
    ]


def _connects(family: int, ip: str, port: int) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        return probe.connect_ex((ip, port)) == 0


class _ListenerWatch:
    """Polls the listening sockets of this process and its children while a block runs."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, int]] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        me = psutil.Process()
        while not self._done.wait(0.1):
            self.seen |= _listeners({me.pid} | {c.pid for c in me.children(recursive=True)})

    def __enter__(self) -> _ListenerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def _call(address: str, method: str, request: object) -> bytes:
    with grpc.insecure_channel(address) as channel:
        return getattr(FederatedStub(channel), method)(request, timeout=10).receive_buffer


def _all_ranks(address: str, method: str, requests: list) -> list[bytes]:
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: _call(address, method, r), requests))


@pytest.fixture
def tracker() -> LoopbackTracker:
    t = LoopbackTracker(3, timeout=5)
    t.start()
    yield t
    t.stop()


def test_codes_match_flares_proto() -> None:
    assert {pb2.DataType.Name(k): v.type for k, v in collective.DTYPES.items()} == NUMPY_TYPES
    assert {k: pb2.ReduceOperation.Name(k) for k in collective.OP_NAMES} == collective.OP_NAMES


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_any_host_but_loopback_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match=r"binds to 127\.0\.0\.1 only.*inject gradient histograms"):
        LoopbackTracker(3, 0, host=host)


def test_only_loopback_reaches_the_port(tracker: LoopbackTracker) -> None:
    assert _listeners({psutil.Process().pid}) >= {("127.0.0.1", tracker.port)}
    assert _connects(socket.AF_INET, "127.0.0.1", tracker.port)
    assert not _connects(socket.AF_INET6, "::1", tracker.port)
    assert [ip for family, ip in _other_addresses() if _connects(family, ip, tracker.port)] == []


def test_three_ranks_get_the_collectives_and_are_counted(tracker: LoopbackTracker) -> None:
    sums = [np.array([r, 10.0 * r]) for r in range(3)]
    reduced = _all_ranks(
        tracker.address,
        "Allreduce",
        [
            pb2.AllreduceRequest(
                sequence_number=0,
                rank=r,
                send_buffer=s.tobytes(),
                data_type=pb2.DOUBLE,
                reduce_operation=pb2.SUM,
            )
            for r, s in enumerate(sums)
        ],
    )
    gathered = _all_ranks(
        tracker.address,
        "AllgatherV",
        [pb2.AllgatherVRequest(sequence_number=1, rank=r, send_buffer=b"x" * (r + 1)) for r in range(3)],
    )
    broadcast = _all_ranks(
        tracker.address,
        "Broadcast",
        [
            pb2.BroadcastRequest(sequence_number=2, rank=r, send_buffer=b"root" if r == 2 else b"", root=2)
            for r in range(3)
        ],
    )
    assert [np.frombuffer(b).tolist() for b in reduced] == [[3.0, 30.0]] * 3
    assert gathered == [b"xxxxxx"] * 3
    assert broadcast == [b"root"] * 3
    stats = tracker.stats()
    assert stats["ops"] == 3 and stats["errors"] == 0
    assert stats["by_op"] == {"Allreduce": 1, "AllgatherV": 1, "Broadcast": 1}
    assert [r["bytes_received"] for r in stats["ranks"]] == [16 + 1, 16 + 2, 16 + 3 + 4]
    assert [r["bytes_sent"] for r in stats["ranks"]] == [16 + 6 + 4] * 3
    assert [r["ops"] for r in stats["ranks"]] == [3, 3, 3]


def test_a_missing_rank_times_out_with_its_name() -> None:
    short = LoopbackTracker(2, timeout=0.3)
    short.start()
    assert short.missing_ranks() == []
    try:
        request = pb2.AllgatherRequest(sequence_number=0, rank=0, send_buffer=b"abc")
        with pytest.raises(grpc.RpcError) as caught:
            _call(short.address, "Allgather", request)
    finally:
        short.stop()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "Allgather #0: rank(s) [1] did not arrive within 0.3 s" in caught.value.details()
    assert short.missing_ranks() == [1]  # the controller names that rank's site in the run record
    assert short.stats()["errors"] == 1 and short.stats()["ops"] == 0


@pytest.mark.parametrize(("first", "second", "message"), DISAGREEMENTS)
def test_ranks_that_disagree_all_fail(first: tuple, second: tuple, message: str) -> None:
    """The world here is rank 0 and rank 1; rank 2 never comes, the disagreement fails the op at once."""
    short = LoopbackTracker(3, timeout=30)
    short.start()

    def call(rank: int, spec: tuple) -> tuple[grpc.StatusCode, str]:
        method, fields = spec
        request = getattr(pb2, f"{method}Request")(
            sequence_number=4, rank=rank, send_buffer=b"abcdefgh", **fields
        )
        try:
            _call(short.address, method, request)
        except grpc.RpcError as e:
            return e.code(), e.details()
        return grpc.StatusCode.OK, ""

    try:
        first_reply = ThreadPoolExecutor(1).submit(call, 0, first)
        time.sleep(0.2)  # rank 0 arrives first: its signature is the round's
        second_reply = call(1, second)
        replies = [first_reply.result(timeout=10), second_reply]
    finally:
        short.stop()
    assert [code for code, _ in replies] == [grpc.StatusCode.FAILED_PRECONDITION] * 2
    assert all(message in details for _, details in replies)


def test_stop_releases_a_waiting_rank() -> None:
    tracker = LoopbackTracker(2, timeout=30)
    tracker.start()
    request = pb2.AllgatherRequest(sequence_number=0, rank=0, send_buffer=b"a")
    waiting = ThreadPoolExecutor(1).submit(_call, tracker.address, "Allgather", request)
    time.sleep(0.2)
    began = time.monotonic()
    tracker.stop()
    with pytest.raises(grpc.RpcError) as caught:
        waiting.result(timeout=10)
    assert time.monotonic() - began < 5
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "is stopping" in caught.value.details()


# Measured 15 to 20 s on the 2 shared cores this was written on (load 5 to 11): three spawned
# processes import xgboost (3 to 5 s each there); the ten rounds themselves take 0.2 to 0.4 s.
@pytest.mark.slow
def test_xgboost_workers_train_the_centralized_model_through_loopback_only() -> None:
    x, y = _table()
    cuts = np.cumsum(SPLIT)[:-1]
    parts = list(zip(np.split(x, cuts), np.split(y, cuts), strict=True))
    with _ListenerWatch() as watch:
        model, stats = run_federated_histogram(parts, PARAMS, ROUNDS, timeout=60)

    # Only the tracker listened, and only on the loopback interface.
    port = int(stats["address"].rpartition(":")[2])
    assert ("127.0.0.1", port) in watch.seen
    assert {ip for ip, _ in watch.seen} == {"127.0.0.1"}

    # Every site holds the same bytes; run_federated_histogram also raises if they differ.
    assert len(stats["model_sha256"]) == 3 and len(set(stats["model_sha256"])) == 1

    # The centralized model on the pooled rows is the same model. Exactly, for two reasons: every
    # feature has fewer distinct values than max_bin (256), so the federated sketch and the centralized
    # one both keep every value as a cut; and the histograms sum float32 gradients in double, which is
    # exact for a few hundred rows, so summing per site and then across sites cannot change a bit. The
    # JSON text differs only where a split sits at zero: -0E0 centrally, 0E0 federated (equal floats).
    central = xgb.train(PARAMS, xgb.DMatrix(x, label=y), ROUNDS)
    federated = xgb.Booster(model_file=bytearray(model))
    grid = xgb.DMatrix(x)
    assert np.max(np.abs(federated.predict(grid) - central.predict(grid))) == 0.0
    assert json.loads(model) == json.loads(bytes(central.save_raw("json")))

    # The tracker counted all three sites; setup plus the rounds account for every collective.
    ranks = stats["tracker"]["ranks"]
    assert all(r["bytes_received"] > 0 and r["bytes_sent"] > 0 for r in ranks)
    assert [r["ops"] for r in ranks] == [stats["tracker"]["ops"]] * 3
    assert len(stats["rounds"]) == ROUNDS and all(r["ops"] > 0 for r in stats["rounds"])
    per_site = np.sum(
        [stats["setup"]["bytes_from_sites"]] + [r["bytes_from_sites"] for r in stats["rounds"]], 0
    )
    assert per_site.tolist() == [r["bytes_received"] for r in ranks]
