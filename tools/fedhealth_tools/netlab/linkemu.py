"""A hospital's WAN link in user space: two TAP devices in two network namespaces, joined by this process.

Every Ethernet frame that one side sends is read from its TAP device, dropped with the profile's loss
rate, held for the one-way delay (± jitter, order kept) and written to the other side's TAP device;
the bandwidth is the kernel's ``tc tbf`` on both TAP devices, set up by the lab. This is what
``tc netem`` does, in user space, because ``sch_netem`` is missing from some kernels (this machine's
among them).

Run by the lab, one process a link::

    python -m fedhealth_tools.netlab.linkemu --a NS_A:DEV_A --b NS_B:DEV_B --profile '{"rate_mbit": 20, ...}'

Each line on standard input is a JSON object of profile fields to change now (``{"loss": 1.0}`` cuts
the link, ``{"loss": 0.005}`` restores it); ``counters`` prints the frame counts as a JSON line.
The process ends when its standard input closes.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import random
import selectors
import struct
import sys
import time
from collections import deque
from dataclasses import dataclass, field

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MAX_FRAME = 65536


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def open_tap(netns: str, device: str) -> int:
    """A non-blocking file descriptor on the TAP device ``device`` of the named network namespace.

    The calling thread enters that namespace to attach (a TAP device is found by name in the caller's
    namespace) and returns to its own; the descriptor stays bound to the device.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", device.encode(), IFF_TAP | IFF_NO_PI))
            return fd
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


@dataclass
class Direction:
    """Frames in flight one way: (due time, frame), in order."""

    src: int
    dst: int
    queue: deque = field(default_factory=deque)
    last_due: float = 0.0
    frames: int = 0
    bytes: int = 0
    dropped: int = 0

    def counters(self) -> dict:
        return {
            "frames": self.frames,
            "bytes": self.bytes,
            "dropped": self.dropped,
            "queued": len(self.queue),
        }


@dataclass
class Impairment:
    """The delay, jitter and loss part of a profile (the bandwidth is the kernel's)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0

    def update(self, fields: dict) -> None:
        for key in ("delay_ms", "jitter_ms", "loss"):
            if key in fields:
                setattr(self, key, float(fields[key]))

    def due(self, now: float, last_due: float, rng: random.Random) -> float:
        delay = self.delay_ms + (rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0)
        return max(now + max(delay, 0.0) / 1000.0, last_due)


def run(a: tuple[str, str], b: tuple[str, str], impairment: Impairment, seed: int) -> dict:
    """Forward frames both ways until standard input closes; returns the counters.

    ``a`` is the hospital's side: frames from ``a`` to ``b`` are its uploads (``up``), the others
    its downloads (``down``).
    """
    rng = random.Random(seed)
    fd_a, fd_b = open_tap(*a), open_tap(*b)
    ways = {fd_a: Direction(fd_a, fd_b), fd_b: Direction(fd_b, fd_a)}
    sel = selectors.DefaultSelector()
    sel.register(fd_a, selectors.EVENT_READ)
    sel.register(fd_b, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        now = time.monotonic()
        pending = [w.queue[0][0] for w in ways.values() if w.queue]
        timeout = max(0.0, min(pending) - now) if pending else None
        for key, _ in sel.select(timeout):
            if key.fileobj is sys.stdin:
                line = sys.stdin.readline()
                if not line:
                    return _counters(ways[fd_a], ways[fd_b])
                _control(line, impairment, ways[fd_a], ways[fd_b])
                continue
            way = ways[key.fd]  # type: ignore[index]
            for _ in range(64):  # drain a burst, then look at the clock again
                try:
                    frame = os.read(way.src, MAX_FRAME)
                except BlockingIOError:
                    break
                if impairment.loss and rng.random() < impairment.loss:
                    way.dropped += 1
                    continue
                way.last_due = impairment.due(time.monotonic(), way.last_due, rng)
                way.queue.append((way.last_due, frame))
        now = time.monotonic()
        for way in ways.values():
            while way.queue and way.queue[0][0] <= now:
                _, frame = way.queue.popleft()
                try:
                    os.write(way.dst, frame)
                    way.frames += 1
                    way.bytes += len(frame)
                except BlockingIOError:  # the receiving device's queue is full: a drop, as on a wire
                    way.dropped += 1


def _counters(up: Direction, down: Direction) -> dict:
    return {"up": up.counters(), "down": down.counters()}


def _control(line: str, impairment: Impairment, up: Direction, down: Direction) -> None:
    line = line.strip()
    if line == "counters":
        print(json.dumps(_counters(up, down)), flush=True)
    elif line:
        impairment.update(json.loads(line))
        print(json.dumps({"applied": vars(impairment)}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="NETNS:DEVICE of one side")
    parser.add_argument("--b", required=True, help="NETNS:DEVICE of the other side")
    parser.add_argument("--profile", required=True, help="JSON: delay_ms, jitter_ms, loss")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    impairment = Impairment()
    impairment.update(json.loads(args.profile))
    side_a = tuple(args.a.split(":", 1))
    side_b = tuple(args.b.split(":", 1))
    counters = run(side_a, side_b, impairment, args.seed)  # type: ignore[arg-type]
    print(json.dumps({"final": counters}), file=sys.stderr)  # into the lab's link log
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
