"""Run a command only while the process that started it lives.

``python -m fedhealth.flower.supervise --parent PID -- CMD [ARG ...]`` (``--parent``: the starting
process's pid, default this process's parent at start; give it, as the race of a parent that ends
before the supervisor reads its own parent is then caught too).

A site's SuperNode is started by the site's FLARE job process (FLARE's applet, a plain ``Popen``).
When that job process ends without stopping it (an aborted job, a job process killed after its
grace period), the SuperNode would live on, orphaned, retrying a link that is gone. This small
supervisor sits between them: it starts the command in a process group of its own and ends the whole
group (SIGTERM, then SIGKILL after ``GRACE_S``) when it is told to stop (SIGTERM or SIGINT, what
FLARE's applet sends) or when its parent is gone (it is re-parented), then exits with the command's
status. No Flower import: the kit's environment can run and test it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_S = 10.0
POLL_S = 0.5


def _stop_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the command's process group, SIGKILL what is left after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            os.killpg(proc.pid, signal.SIGKILL)  # the command's own children, if any are left
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            pass
        return


def supervise(
    command: list[str], *, parent: int | None = None, grace_s: float = GRACE_S, poll_s: float = POLL_S
) -> int:
    """Run ``command`` until it ends, this process is told to stop, or ``parent`` is no longer its parent."""
    parent = os.getppid() if parent is None else parent
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    proc = subprocess.Popen(command, start_new_session=True)
    while proc.poll() is None:
        if stopping or os.getppid() != parent:
            _stop_group(proc, grace_s)
            break
        time.sleep(poll_s)
    code = proc.wait()
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    split = args.index("--") if "--" in args else len(args)
    options, command = args[:split], args[split + 1 :]
    parent = None
    if options[:1] == ["--parent"] and len(options) == 2 and options[1].isdigit():
        parent = int(options[1])
    elif options:
        command = []
    if not command:
        print(
            "usage: python -m fedhealth.flower.supervise [--parent PID] -- COMMAND [ARG ...]", file=sys.stderr
        )
        return 2
    return supervise(command, parent=parent)


if __name__ == "__main__":
    sys.exit(main())
