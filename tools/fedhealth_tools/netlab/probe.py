"""What a lab link really does, measured from inside a site's namespace: round-trip time and goodput.

Run by the lab (``ip netns exec SITE python -m fedhealth_tools.netlab.probe ...``):

- ``rtt HOST PORT [--count N]``: the median TCP handshake time to a listening port, in ms;
- ``sink PORT``: accept connections, read everything, answer ``ok`` (run in the server's namespace);
- ``goodput HOST PORT BYTES``: send BYTES to a sink and wait for its answer; Mbit/s of payload.

Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time


def rtt_ms(host: str, port: int, count: int = 5) -> float:
    """Median time of ``count`` TCP connects (SYN to SYN-ACK: one round trip), in ms."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection((host, port), timeout=10):
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def sink(port: int) -> None:
    """Read whatever each connection sends, then answer ``ok`` (forever)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))  # inside the server's own namespace: the lab's bridge only
    server.listen()
    print(json.dumps({"listening": port}), flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 20):
                pass
            conn.sendall(b"ok")


def goodput_mbit(host: str, port: int, size: int) -> float:
    """Payload Mbit/s of sending ``size`` bytes until the sink confirms it read them all."""
    data = b"\0" * (1 << 20)
    start = time.perf_counter()
    with socket.create_connection((host, port), timeout=60) as conn:
        sent = 0
        while sent < size:
            chunk = data[: min(len(data), size - sent)]
            conn.sendall(chunk)
            sent += len(chunk)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(2)
    return size * 8 / 1e6 / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p_rtt = sub.add_parser("rtt")
    p_rtt.add_argument("host")
    p_rtt.add_argument("port", type=int)
    p_rtt.add_argument("--count", type=int, default=5)
    p_sink = sub.add_parser("sink")
    p_sink.add_argument("port", type=int)
    p_put = sub.add_parser("goodput")
    p_put.add_argument("host")
    p_put.add_argument("port", type=int)
    p_put.add_argument("bytes", type=int)
    args = parser.parse_args(argv)
    if args.what == "rtt":
        print(json.dumps({"rtt_ms": rtt_ms(args.host, args.port, args.count)}))
    elif args.what == "sink":
        sink(args.port)
    else:
        print(json.dumps({"goodput_mbit": goodput_mbit(args.host, args.port, args.bytes)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
