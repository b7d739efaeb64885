"""The SuperNode's supervisor ends its command with the process that started it, or when told to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "custom")}
SUPERVISE = [sys.executable, "-m", "fedhealth.flower.supervise", "--"]


def _pid_from(path: Path, timeout: float = 10.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.1)
    return False


STARTER = """
import os, subprocess, sys, time
pid_file = sys.argv[1]
command = [sys.executable, "-m", "fedhealth.flower.supervise", "--parent", str(os.getpid()), "--",
           "sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"]
subprocess.Popen(command)
while not os.path.exists(pid_file):
    time.sleep(0.05)
"""


def test_the_command_ends_when_the_starting_process_is_gone(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # the starter launches the supervisor, waits until the command runs, then ends without stopping
    # it, as a job process killed mid-run would
    subprocess.run([sys.executable, "-c", STARTER, str(pid_file)], env=ENV, check=True, timeout=30)
    child = _pid_from(pid_file)
    try:
        assert _gone(child, timeout=15), "the supervised command outlived the process that started it"
    finally:
        if psutil.pid_exists(child):
            os.kill(child, signal.SIGKILL)


def test_sigterm_stops_the_command_and_reports_its_signal(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    proc = subprocess.Popen([*SUPERVISE, "sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], env=ENV)
    child = _pid_from(pid_file)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 128 + signal.SIGTERM
    assert _gone(child, timeout=5)


def test_a_command_that_ends_by_itself_gives_its_status() -> None:
    done = subprocess.run([*SUPERVISE, "sh", "-c", "exit 3"], env=ENV, timeout=30)
    assert done.returncode == 3


def test_a_command_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = (
        "import sys; from fedhealth.flower.supervise import supervise; "
        "sys.exit(supervise(['sh', '-c', "
        f"'trap \"\" TERM; echo $$ > {pid_file}; while :; do sleep 0.1; done'],"
        " grace_s=0.5, poll_s=0.1))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV)
    child = _pid_from(pid_file)
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 128 + signal.SIGKILL
    assert time.time() - started < 8
    assert _gone(child, timeout=5)


def test_without_a_command_it_says_how_to_call_it() -> None:
    done = subprocess.run(SUPERVISE, env=ENV, capture_output=True, text=True, timeout=30)
    assert (
        done.returncode == 2 and "usage: python -m fedhealth.flower.supervise [--parent PID]" in done.stderr
    )
    bad = subprocess.run(
        [*SUPERVISE[:-1], "--parent", "x", "--", "true"], env=ENV, capture_output=True, timeout=30
    )
    assert bad.returncode == 2
