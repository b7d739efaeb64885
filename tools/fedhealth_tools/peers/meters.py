"""Framework-neutral meters for side-by-side runs: memory of process trees and bytes on TCP links.

Both sample from outside the processes they measure, so a FLARE federation and a Flower one are
measured the same way:

* :class:`TreeMemory`: every ``interval`` seconds, the proportional set size (PSS: shared pages
  divided among the processes that map them, so summing processes does not count a shared library
  twice) of each named process tree (a root and all its descendants, e.g. a FLARE site and its job
  process, or a Flower SuperNode and its ClientApp processes); reports each tree's peak and the peak
  of their sum.
* :class:`LinkBytes`: every ``interval`` seconds, the kernel's TCP counters (``ss -tinp``:
  ``bytes_sent``/``bytes_received`` of each established socket) of the sockets a named tree holds
  to one of the server's ports; reports bytes each way per tree. A socket's counters grow until it
  closes, so the last sample of each socket is its total; a socket that opens and closes between
  two samples is not seen, and one that closes loses what it carried after its last sample.
  The bytes are TCP payload: the framework's messages plus TLS and gRPC framing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_SOCKET = re.compile(
    r"^\S+\s+\S+\s+(?P<local>\S+):(?P<lport>\d+)\s+(?P<peer>\S+):(?P<pport>\d+)\s+(?P<rest>.*)$"
)
_PID = re.compile(r"pid=(\d+)")
_COUNTER = re.compile(r"\b(bytes_sent|bytes_received):(\d+)")


def tree_pids(root: int) -> set[int]:
    """The process ``root`` and all its descendants now; empty if it has exited."""
    try:
        proc = psutil.Process(root)
        return {root, *(child.pid for child in proc.children(recursive=True))}
    except psutil.Error:
        return set()


def _pss(pid: int) -> int:
    try:
        return psutil.Process(pid).memory_full_info().pss
    except (psutil.Error, AttributeError):
        return 0


class _Sampler:
    """A daemon thread calling ``sample`` every ``interval`` seconds between start and stop."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class TreeMemory(_Sampler):
    """Peak PSS of named process trees and of their sum.

    Args:
        roots: tree name -> root pid, or a callable returning that mapping (roots that start later,
            e.g. processes restarted during the run).
        interval: seconds between samples.
    """

    roots: Mapping[str, int] | Callable[[], Mapping[str, int]]
    interval: float = 0.25
    peaks: dict[str, int] = field(default_factory=dict)
    peak_total: int = 0

    def __post_init__(self) -> None:
        _Sampler.__init__(self, self.interval)

    def sample(self) -> None:
        roots = self.roots() if callable(self.roots) else self.roots
        total = 0
        for name, root in roots.items():
            size = sum(_pss(pid) for pid in tree_pids(root))
            self.peaks[name] = max(self.peaks.get(name, 0), size)
            total += size
        self.peak_total = max(self.peak_total, total)

    def result(self) -> dict:
        """Peaks in MB: ``{"peak_total_mb": ..., "peak_mb": {name: ...}}``."""
        return {
            "peak_total_mb": self.peak_total / 1e6,
            "peak_mb": {name: size / 1e6 for name, size in sorted(self.peaks.items())},
        }


def parse_ss(text: str) -> list[dict]:
    """Sockets from ``ss -tinpH``: local and peer port, owning pids, bytes sent and received."""
    sockets: list[dict] = []
    current: dict | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _SOCKET.match(line) if not line[0].isspace() else None
        if match:
            current = {
                "local": f"{match['local']}:{match['lport']}",
                "peer": f"{match['peer']}:{match['pport']}",
                "peer_port": int(match["pport"]),
                "pids": sorted({int(p) for p in _PID.findall(match["rest"])}),
                "bytes_sent": 0,
                "bytes_received": 0,
            }
            sockets.append(current)
            line = match["rest"]
        if current is not None:
            for key, value in _COUNTER.findall(line):
                current[key] = int(value)
    return sockets


@dataclass
class LinkBytes(_Sampler):
    """TCP bytes each named process tree exchanged with the server's ports.

    Args:
        roots: tree name -> root pid (or a callable returning it), e.g. each site's process.
        server_ports: the ports the server listens on; sockets to other ports are not counted.
        interval: seconds between samples.
    """

    roots: Mapping[str, int] | Callable[[], Mapping[str, int]]
    server_ports: set[int]
    interval: float = 0.25
    sockets: dict[tuple[str, str], dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _Sampler.__init__(self, self.interval)

    def sample(self) -> None:
        roots = self.roots() if callable(self.roots) else self.roots
        owner = {pid: name for name, root in roots.items() for pid in tree_pids(root)}
        try:
            text = subprocess.run(
                ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return
        for sock in parse_ss(text):
            if sock["peer_port"] not in self.server_ports:
                continue
            names = {owner[pid] for pid in sock["pids"] if pid in owner}
            if len(names) != 1:
                continue
            key = (sock["local"], sock["peer"])
            seen = self.sockets.setdefault(key, {"tree": names.pop(), "bytes_sent": 0, "bytes_received": 0})
            seen["bytes_sent"] = max(seen["bytes_sent"], sock["bytes_sent"])
            seen["bytes_received"] = max(seen["bytes_received"], sock["bytes_received"])

    def result(self) -> dict[str, dict[str, int]]:
        """Per tree: ``{"bytes_sent": ..., "bytes_received": ..., "sockets": ...}``."""
        out: dict[str, dict[str, int]] = {}
        for sock in self.sockets.values():
            row = out.setdefault(sock["tree"], {"bytes_sent": 0, "bytes_received": 0, "sockets": 0})
            row["bytes_sent"] += sock["bytes_sent"]
            row["bytes_received"] += sock["bytes_received"]
            row["sockets"] += 1
        return dict(sorted(out.items()))


def run_measured(
    command: list[str], log: Path, *, timeout: float, env: Mapping[str, str] | None = None
) -> dict:
    """Run ``command`` in its own session under :class:`TreeMemory`; output to ``log``.

    Returns ``returncode`` (None when it ran past ``timeout`` and was killed), ``wall_s`` and
    ``peak_mem_mb`` (the peak PSS of the command's whole process tree, e.g. Ray's workers too).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log.open("w") as handle:
        proc = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        with TreeMemory({"run": proc.pid}) as memory:
            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                returncode = None
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return {
        "returncode": returncode,
        "wall_s": time.time() - started,
        "peak_mem_mb": memory.result()["peak_total_mb"],
    }
