"""Starting and stopping the POC server and client processes, always cleanly.

Each participant runs its provisioned ``startup/sub_start.sh --once`` (the real FLARE server or
client process, mTLS with the provisioned certificates) in its own process group. :class:`PocProcesses`
is a context manager: leaving it, normally, on an error or on Ctrl-C, stops every process it
started and every job process they spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

from fedhealth_tools.poc.workspace import PocError, PocLayout

RUNUSER = "/usr/sbin/runuser"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it), for runs that must not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_holder(port: int) -> str:
    """A short description of the process listening on ``port``, where it can be read."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({proc.name()})"
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        pass
    return "another process"


class PocProcesses:
    """The server and client processes of one POC workspace.

    Args:
        layout: the provisioned workspace.
        log_dir: where each participant's console output goes.
        run_as: start every participant as this (unprivileged) user, through ``runuser`` (the
            caller must be root); ``HOME`` is set to ``home``.
        home: the ``HOME`` of the processes started with ``run_as``.
        cwd: the working directory of every participant (default: its kit folder). ``python -m``
            puts it first on the import path of the FLARE processes and their job processes.
        env: environment variables set over this process's own (e.g. ``PATH`` to a Python the
            ``run_as`` user may execute).
        prefix: a command each participant's start is run under, by name (the network lab's
            ``ip netns exec NS``: each host in its own network namespace).
        listening: whether the server listens on a port (default: on 127.0.0.1 here); the network
            lab asks inside the server's namespace.
        python: the Python interpreter the participants run (default: this process's). Its ``bin``
            folder goes first on ``PATH`` (``sub_start.sh`` calls ``python3``); FLARE starts a job's
            processes, and its Flower integration ``flower-supernode``/``flower-superlink``, from
            there. A Flower job needs the environment with ``flwr`` (``.venv-flower``).
    """

    def __init__(
        self,
        layout: PocLayout,
        log_dir: Path,
        *,
        run_as: str | None = None,
        home: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        prefix: Mapping[str, Sequence[str]] | None = None,
        listening: Callable[[int], bool] | None = None,
        python: Path | None = None,
    ) -> None:
        self.layout = layout
        self.log_dir = Path(log_dir)
        self.run_as = run_as
        self.home = home
        self.cwd = cwd
        self.extra_env = dict(env or {})
        self.prefix = {name: list(command) for name, command in (prefix or {}).items()}
        self.listening = listening or port_in_use
        self.python = Path(python) if python is not None else Path(sys.executable)
        if not self.python.is_file():
            raise PocError(f"no Python interpreter at {self.python}")
        self._procs: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> PocProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # sub_start.sh calls `python3`: make it the chosen environment's Python, with fedhealth installed.
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("NVFL_WORKSPACE", None)
        env.update(self.extra_env)
        return env

    def _start(self, name: str, *, append: bool = False) -> None:
        script = self.layout.kit(name) / "startup" / "sub_start.sh"
        if not script.is_file():
            raise PocError(f"no startup kit for {name}: {script} is missing")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        mode = "ab" if append else "wb"
        log = open(self.log_dir / f"{name}.log", mode)  # noqa: SIM115 - closed with the process
        command = ["bash", str(script), "--once"]
        if self.run_as is not None:
            command = [
                RUNUSER,
                "-u",
                self.run_as,
                "--",
                "env",
                f"HOME={self.home or '/nonexistent'}",
                *command,
            ]
        command = [*self.prefix.get(name, []), *command]
        self._procs[name] = subprocess.Popen(
            command,
            cwd=self.cwd or self.layout.kit(name),
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def start(self, timeout: float = 60.0) -> None:
        """Start the server, wait until it listens, then start every site."""
        port = self.layout.port
        if self.listening(port):
            raise PocError(
                f"port {port} on 127.0.0.1 is taken by {port_holder(port)}; stop it or change "
                f"fed_learn_port/admin_port in project.yml"
            )
        self._start(self.layout.server)
        self._wait_for_server_port(timeout)
        for site in self.layout.sites:
            self._start(site)

    def _wait_for_server_port(self, timeout: float) -> None:
        port = self.layout.port
        deadline = time.monotonic() + timeout
        while not self.listening(port):
            self._check_alive()
            if time.monotonic() > deadline:
                raise PocError(f"the FLARE server did not listen on its port {port} within {timeout:.0f} s")
            time.sleep(0.3)

    def start_participant(self, name: str) -> None:
        """Start one participant again from its kit (a site that comes back after a failure)."""
        if name in self._procs and self._procs[name].poll() is None:
            raise PocError(f"{name} is already running")
        self._start(name, append=True)

    def pid(self, name: str) -> int:
        """The process id of a started participant (its process group id too)."""
        if name not in self._procs:
            raise PocError(f"{name} is not running under this PocProcesses")
        return self._procs[name].pid

    def restart(self, name: str, *, timeout: float = 60.0) -> None:
        """Kill one participant at once (SIGKILL, job processes included) and start it again from its kit.

        A crash and a restart by the site's operator: the kit's workspace (job store, run folders) is
        kept, the console output is appended to the same log. For the server, wait until it listens
        again; the sites reconnect on their own.
        """
        if name in self._procs:
            self.kill(name)
        if name == self.layout.server:
            deadline = time.monotonic() + timeout
            while self.listening(self.layout.port):  # the killed server's socket closes with it
                if time.monotonic() > deadline:
                    raise PocError(f"port {self.layout.port} still taken after killing {name}")
                time.sleep(0.2)
        self._start(name, append=True)
        if name == self.layout.server:
            self._wait_for_server_port(timeout)

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                log = self.log_dir / f"{name}.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
                raise PocError(f"{name} exited with code {proc.returncode}:\n  " + "\n  ".join(tail))

    def kill(self, name: str) -> None:
        """Kill one participant and its job processes at once (a site that drops out mid-round)."""
        proc = self._procs.pop(name)
        with contextlib.suppress(psutil.NoSuchProcess):
            parent = psutil.Process(proc.pid)
            for child in parent.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def check_alive(self) -> None:
        """Raise :class:`PocError` naming a participant that died."""
        self._check_alive()

    def stop(self, grace: float = 10.0) -> None:
        """Stop every started process and its children: SIGTERM, then SIGKILL after ``grace`` s."""
        victims: list[psutil.Process] = []
        for proc in self._procs.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                parent = psutil.Process(proc.pid)
                victims.extend([parent, *parent.children(recursive=True)])
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(victims, timeout=grace)
        for victim in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.kill()
        psutil.wait_procs(alive, timeout=5)
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        self._procs.clear()
