"""FLARE's Flower client applet, starting a Flower 1.42 SuperNode.

FLARE 2.9's :class:`~nvflare.app_opt.flower.applet.FlowerClientApplet` starts
``flower-supernode --grpc-adapter --clientappio-api-address ...``; Flower 1.42's SuperNode has
neither option (its Fleet API is protobuf over HTTP, its runtime API an HTTP server at ``--host``/
``--port``). This applet starts the same process the 1.42 way: ``--superlink`` is the site's
:class:`~fedhealth.flower.fleet_bridge.FleetBridge` on 127.0.0.1 (plain HTTP on loopback; FLARE's
mTLS carries the traffic off the host), the runtime API on a free local port, and never
``--allow-runtime-dependency-installation``. It runs under :mod:`fedhealth.flower.supervise`, which
ends it when the job process that started it is gone, however that process ended.
"""

from __future__ import annotations

import os
import shlex
import sys

from nvflare.apis.fl_context import FLContext
from nvflare.app_common.metrics_exchange.metrics_sender import (
    ANALYTICS_BOOTSTRAP_ENV,
    ANALYTICS_BOOTSTRAP_FILE,
)
from nvflare.app_common.tie.process_mgr import CommandDescriptor, StopMethod
from nvflare.app_opt.flower.applet import FLOWER_SUPERNODE, FlowerClientApplet
from nvflare.app_opt.flower.defs import Constant

LOG_FILE = "client_app_log.txt"  # in the site's job app folder, as FLARE's applet names it


class SuperNodeApplet(FlowerClientApplet):
    """Starts ``flower-supernode`` (flwr 1.42) for one site's part of a Flower run.

    Args:
        extra_env: environment variables for the SuperNode and its ClientApp processes (set by
            the site's executor, never by a job).
    """

    def __init__(self, *, extra_env: dict | None = None) -> None:
        super().__init__(extra_env=dict(extra_env or {}), allow_runtime_dependency_installation=False)

    def get_command(self, ctx: dict) -> CommandDescriptor:
        fl_ctx = ctx.get(Constant.APP_CTX_FL_CONTEXT)
        if not isinstance(fl_ctx, FLContext):
            raise RuntimeError(f"expected the applet context's FLContext, got {type(fl_ctx).__name__}")
        superlink = ctx[Constant.APP_CTX_SUPERLINK_ADDR]
        host, _, port = str(ctx[Constant.APP_CTX_CLIENTAPP_API_ADDR]).rpartition(":")
        supernode = os.path.join(os.path.dirname(sys.executable), FLOWER_SUPERNODE)
        if not os.access(supernode, os.X_OK):
            raise RuntimeError(
                f"no {FLOWER_SUPERNODE} beside {sys.executable}: this site's Python has no flwr"
            )
        # under the kit's supervisor: the SuperNode (and its ClientApps) end with this job process
        cmd = " ".join(
            [
                shlex.quote(sys.executable),
                f"-m fedhealth.flower.supervise --parent {os.getpid()} --",
                shlex.quote(supernode),
                "--insecure",
                f"--superlink {shlex.quote(superlink)}",
                f"--host {shlex.quote(host)} --port {int(port)}",
            ]
        )
        cmd += self._get_node_config(fl_ctx) or ""
        ws = fl_ctx.get_engine().get_workspace()
        job_id = fl_ctx.get_job_id()
        env = dict(self.extra_env)
        env[ANALYTICS_BOOTSTRAP_ENV] = os.path.join(ws.get_app_config_dir(job_id), ANALYTICS_BOOTSTRAP_FILE)
        self.logger.info(f"starting flower supernode: {cmd}")
        return CommandDescriptor(
            cmd=cmd,
            cwd=ws.get_app_dir(job_id),
            env=env,
            log_file_name=LOG_FILE,
            stdout_msg_prefix="FLWR-CA",
            stop_method=StopMethod.TERMINATE,
        )
