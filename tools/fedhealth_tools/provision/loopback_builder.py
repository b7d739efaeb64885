"""Keeps a one-machine (POC) federation on the loopback interface.

FLARE's POC kits listen on all interfaces even with ``default_host: localhost``. This builder
rewrites the server's service target, the clients' server target and the admins' host to
``127.0.0.1``, so nothing listens beyond this machine; certificates and mTLS are unchanged. Use it
only in the POC project file; production kits use the real host name.
"""

from __future__ import annotations

import json
from pathlib import Path

from nvflare.lighter.spec import Builder, Project, ProvisionContext

LOOPBACK = "127.0.0.1"


def _rewrite_target(target: str) -> str:
    _, _, port = target.rpartition(":")
    return f"{LOOPBACK}:{port}"


class LoopbackBuilder(Builder):
    """Points every startup kit at ``127.0.0.1``. Place it before ``SignatureBuilder``."""

    def build(self, project: Project, ctx: ProvisionContext) -> None:
        server = project.get_server()
        if server is not None:
            self._edit(Path(ctx.get_kit_dir(server)) / "fed_server.json", self._server)
        for client in project.get_clients():
            self._edit(Path(ctx.get_kit_dir(client)) / "fed_client.json", self._client)
        for admin in project.get_admins():
            self._edit(Path(ctx.get_kit_dir(admin)) / "fed_admin.json", self._admin)

    @staticmethod
    def _edit(path: Path, change) -> None:
        if path.is_file():
            config = json.loads(path.read_text())
            change(config)
            path.write_text(json.dumps(config, indent=2))

    @staticmethod
    def _server(config: dict) -> None:
        for server in config.get("servers", []):
            service = server.get("service", {})
            if "target" in service:
                service["target"] = _rewrite_target(service["target"])

    _client = _server

    @staticmethod
    def _admin(config: dict) -> None:
        if "admin" in config:
            config["admin"]["host"] = LOOPBACK
