"""FLARE's Flower server applet, starting a Flower 1.42 SuperLink.

FLARE 2.9's :class:`~nvflare.app_opt.flower.applet.FlowerServerApplet` starts ``flower-superlink``
with ``--serverappio-api-address``, which Flower 1.42 refuses: its runtime, control and Fleet APIs
are one HTTP server at ``--host``/``--port``, and the ``flwr`` CLI (``flwr run``/``ls``/``stop``, which
FLARE points at the ``--control-api-address`` it chose) talks HTTP to it. The gRPC Fleet API that
FLARE's server connector needs (``grpc-adapter`` at ``--fleet-api-address``) is still there, behind
the environment variable ``FLWR_INTERNAL_GRPC_FLEET_API=1``.

This applet keeps FLARE's start sequence and changes only the SuperLink's process: the HTTP server at
the address FLARE chose for the control API (so FLARE's ``flwr`` calls reach it), the gRPC Fleet API
switched on, and ``--disable-runtime-dependency-installation`` (Flower 1.42 installs a FAB's
dependencies by default; the kit never does).
"""

from __future__ import annotations

import shlex

from nvflare.apis.fl_context import FLContext
from nvflare.app_common.tie.process_mgr import CommandDescriptor, ProcessManager
from nvflare.app_opt.flower.applet import FLOWER_SUPERLINK, FlowerServerApplet

REMOVED = "--serverappio-api-address"  # FLARE 2.9 passes it; flwr 1.42 exits on it
NO_INSTALLS = "--disable-runtime-dependency-installation"
INSTALLS = "--allow-runtime-dependency-installation"


CONTROL = "--control-api-address"
GRPC_FLEET_ENV = (
    "FLWR_INTERNAL_GRPC_FLEET_API"  # flwr.common.constant: start the gRPC (grpc-adapter) Fleet API
)


def superlink_command(cmd: str) -> str:
    """FLARE's SuperLink command line made Flower 1.42's: HTTP APIs at FLARE's control address, no installs.

    Raises:
        ValueError: ``cmd`` is not a ``flower-superlink`` command, or asks for runtime installs.
    """
    parts = shlex.split(cmd)
    if not parts or not parts[0].endswith(FLOWER_SUPERLINK):
        raise ValueError(f"not a {FLOWER_SUPERLINK} command: {parts[:1]}")
    if INSTALLS in parts:
        raise ValueError(f"the kit never starts a SuperLink with {INSTALLS}")
    out, skip = [], False
    for part in parts:
        if skip:
            skip = False
            continue
        if part == REMOVED:
            skip = True
            continue
        if part.startswith(REMOVED + "="):
            continue
        out.append(part)
    if CONTROL not in out or out.index(CONTROL) + 1 >= len(out):
        raise ValueError(f"FLARE's {FLOWER_SUPERLINK} command has no {CONTROL}")
    host, _, port = out[out.index(CONTROL) + 1].rpartition(":")
    out += ["--host", host, "--port", str(int(port))]
    if NO_INSTALLS not in out:
        out.append(NO_INSTALLS)
    return shlex.join(out)


class SuperLinkApplet(FlowerServerApplet):
    """FLARE's server applet with the SuperLink started the Flower 1.42 way (see the module doc)."""

    def _start_process(self, name: str, cmd_desc: CommandDescriptor, fl_ctx: FLContext) -> ProcessManager:
        if name == "superlink":
            cmd_desc.cmd = superlink_command(cmd_desc.cmd)
            cmd_desc.env = {**(cmd_desc.env or {}), GRPC_FLEET_ENV: "1"}
        return super()._start_process(name, cmd_desc, fl_ctx)
