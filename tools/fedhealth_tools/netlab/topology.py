"""The lab network: one Linux network namespace a host, a bridge, and shaped links to the hospitals.

::

    [server ns] eth0 ──veth── srv ┐
    [admin ns]  eth0 ──veth── adm ├─ br0  [lab ns: the consortium's network]
    [site i ns] eth0 (TAP) ═ linkemu ═ s<i> (TAP) ┘

Every namespace, device and address is the lab's own: nothing is added to the namespace this process
runs in, and traffic stays on the bridge. Bandwidth is ``tc tbf`` on both ends of each link; delay,
jitter and loss are the link emulator's (:mod:`fedhealth_tools.netlab.linkemu`). :meth:`Topology.close`
kills whatever still runs in the namespaces and deletes them (and with them every device).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fedhealth_tools.netlab.profiles import LinkProfile

SUBNET = "10.77.0"
SERVER_ADDRESS = f"{SUBNET}.1"
ADMIN_ADDRESS = f"{SUBNET}.2"
TBF_LATENCY_MS = 100  # the token bucket's queue: 100 ms of traffic at the link's rate


class NetlabError(RuntimeError):
    """The lab could not be built or run; the message says which step and why."""


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise NetlabError(f"`{' '.join(command)}` failed: {proc.stderr.strip()}")


def _tc(netns: str, *args: str) -> None:
    command = ["ip", "netns", "exec", netns, "tc", *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise NetlabError(f"`{' '.join(command[4:])}` in {netns} failed: {proc.stderr.strip()}")


def namespaces_available() -> str | None:
    """``None`` where this process can make a namespace with a TAP device in it; else why not."""
    name = f"fhl-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", name)
    except (NetlabError, FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace here ({exc}); the lab needs root and iproute2"
    try:
        _ip("tuntap", "add", "dev", "t0", "mode", "tap", netns=name)
        _tc(
            name,
            "qdisc",
            "add",
            "dev",
            "t0",
            "root",
            "tbf",
            "rate",
            "10mbit",
            "burst",
            "6000",
            "latency",
            "100ms",
        )
    except (NetlabError, subprocess.TimeoutExpired) as exc:
        return f"network namespaces work but a shaped TAP device does not: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    return None


@dataclass
class SiteLink:
    """A hospital's namespace, address, profile and link emulator."""

    name: str
    netns: str
    address: str
    profile_name: str
    profile: LinkProfile
    emulator: subprocess.Popen | None = None


@dataclass
class Topology:
    """Builds the lab on :meth:`open`, removes all of it on :meth:`close` (or ``with``)."""

    sites: dict[str, tuple[str, LinkProfile]]
    server_profile: LinkProfile
    log_dir: Path
    seed: int = 0
    prefix: str = field(default_factory=lambda: f"fhl-{secrets.token_hex(3)}")
    links: dict[str, SiteLink] = field(default_factory=dict)
    _made: list[str] = field(default_factory=list)

    @property
    def lab_ns(self) -> str:
        return f"{self.prefix}-lab"

    @property
    def server_ns(self) -> str:
        return f"{self.prefix}-server"

    @property
    def admin_ns(self) -> str:
        return f"{self.prefix}-admin"

    def __enter__(self) -> Topology:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _netns(self, name: str) -> str:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("link", "set", "lo", "up", netns=name)
        return name

    def _shape(self, netns: str, device: str, profile: LinkProfile) -> None:
        rate = f"{profile.rate_mbit}mbit"
        burst = str(profile.tbf_burst_bytes)
        _tc(
            netns,
            "qdisc",
            "add",
            "dev",
            device,
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            burst,
            "latency",
            f"{TBF_LATENCY_MS}ms",
        )

    def _veth_host(self, netns: str, bridge_port: str, address: str) -> None:
        _ip(
            "link",
            "add",
            bridge_port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns,
            netns=self.lab_ns,
        )
        _ip("link", "set", bridge_port, "master", "br0", "up", netns=self.lab_ns)
        _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)

    def open(self) -> None:
        """Make the namespaces, the bridge, the links and start each site's link emulator."""
        try:
            self._netns(self.lab_ns)
            _ip("link", "add", "br0", "type", "bridge", netns=self.lab_ns)
            _ip("link", "set", "br0", "up", netns=self.lab_ns)
            self._veth_host(self._netns(self.server_ns), "srv", SERVER_ADDRESS)
            self._shape(self.server_ns, "eth0", self.server_profile)
            self._shape(self.lab_ns, "srv", self.server_profile)
            self._veth_host(self._netns(self.admin_ns), "adm", ADMIN_ADDRESS)
            for i, (site, (profile_name, profile)) in enumerate(sorted(self.sites.items()), start=1):
                self._site(i, site, profile_name, profile)
        except BaseException:
            self.close()
            raise

    def _site(self, index: int, site: str, profile_name: str, profile: LinkProfile) -> None:
        netns = self._netns(f"{self.prefix}-site{index}")
        port = f"s{index}"
        address = f"{SUBNET}.{10 + index}"
        _ip("tuntap", "add", "dev", "eth0", "mode", "tap", netns=netns)
        _ip("tuntap", "add", "dev", port, "mode", "tap", netns=self.lab_ns)
        _ip("link", "set", port, "master", "br0", "up", netns=self.lab_ns)
        _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        self._shape(netns, "eth0", profile)
        self._shape(self.lab_ns, port, profile)
        link = SiteLink(site, netns, address, profile_name, profile)
        self.links[site] = link
        self.log_dir.mkdir(parents=True, exist_ok=True)
        impairment = {"delay_ms": profile.delay_ms, "jitter_ms": profile.jitter_ms, "loss": profile.loss}
        command = [
            sys.executable, "-m", "fedhealth_tools.netlab.linkemu",
            "--a", f"{netns}:eth0", "--b", f"{self.lab_ns}:{port}",
            "--profile", json.dumps(impairment), "--seed", str(self.seed * 1000 + index),
        ]  # fmt: skip
        with open(self.log_dir / f"link_{site}.log", "wb") as log:
            link.emulator = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
            )
        ready = link.emulator.stdout.readline() if link.emulator.stdout else ""
        if '"ready"' not in ready:
            raise NetlabError(
                f"the link emulator of {site} did not start (see {self.log_dir / f'link_{site}.log'})"
            )

    def set_link(self, site: str, **fields: float) -> dict:
        """Change a site's delay, jitter or loss now (``loss=1.0`` cuts its link); the emulator's answer."""
        link = self.links[site]
        if link.emulator is None or link.emulator.stdin is None or link.emulator.stdout is None:
            raise NetlabError(f"{site} has no running link emulator")
        link.emulator.stdin.write(json.dumps(fields) + "\n")
        link.emulator.stdin.flush()
        return json.loads(link.emulator.stdout.readline())

    def counters(self, site: str) -> dict:
        """Frames forwarded and dropped on a site's link so far (both directions)."""
        link = self.links[site]
        assert (
            link.emulator is not None and link.emulator.stdin is not None and link.emulator.stdout is not None
        )
        link.emulator.stdin.write("counters\n")
        link.emulator.stdin.flush()
        return json.loads(link.emulator.stdout.readline())

    def probe_links(self, *, size: int = 2_000_000, port: int = 9400) -> dict[str, dict]:
        """Each site's measured round-trip time to the server and upload goodput, one site at a time.

        A sink runs in the server's namespace while each site connects to it from its own
        (:mod:`fedhealth_tools.netlab.probe`); run it before the federation starts.
        """
        probe = [sys.executable, "-m", "fedhealth_tools.netlab.probe"]
        sink = subprocess.Popen(
            [*self.exec_prefix(self.server_ns), *probe, "sink", str(port)], stdout=subprocess.PIPE, text=True
        )
        measured: dict[str, dict] = {}
        try:
            if "listening" not in (sink.stdout.readline() if sink.stdout else ""):
                raise NetlabError("the probe's sink did not start in the server's namespace")
            for site, link in sorted(self.links.items()):
                row: dict = {"profile": link.profile_name}
                for what, extra in (("rtt", ["--count", "5"]), ("goodput", [str(size)])):
                    command = [*self.exec_prefix(link.netns), *probe, what, SERVER_ADDRESS, str(port), *extra]
                    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
                    if proc.returncode != 0:
                        raise NetlabError(f"probing {site}'s link failed: {proc.stderr.strip()[-300:]}")
                    row.update(json.loads(proc.stdout))
                measured[site] = row
        finally:
            sink.kill()
            sink.wait(timeout=10)
            if sink.stdout is not None:
                sink.stdout.close()
        return measured

    def exec_prefix(self, netns: str) -> list[str]:
        """The command prefix that runs a program inside ``netns``."""
        return ["ip", "netns", "exec", netns]

    def close(self) -> None:
        """Stop the link emulators, kill what still runs in the lab's namespaces, delete them."""
        for link in self.links.values():
            if link.emulator is not None and link.emulator.poll() is None:
                with contextlib.suppress(OSError, ValueError):
                    link.emulator.stdin.close()  # type: ignore[union-attr]
                try:
                    link.emulator.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    link.emulator.kill()
                    link.emulator.wait(timeout=5)
            if link.emulator is not None and link.emulator.stdout is not None:
                link.emulator.stdout.close()
        for netns in reversed(self._made):
            _kill_namespace_processes(netns)
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
        self._made.clear()


def _kill_namespace_processes(netns: str) -> None:
    proc = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=30)
    pids = [int(p) for p in proc.stdout.split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if sig == signal.SIGTERM and pids:
            time.sleep(1.0)
