"""FLARE's Flower client connector for Flower 1.42 SuperNodes, with the site's FAB check on the way in.

FLARE relays the site SuperNode's Fleet calls to the server's SuperLink and back
(:meth:`~nvflare.app_opt.flower.connectors.grpc_client_connector.GrpcClientConnector.SendReceive`).
Flower 1.42's SuperNode makes those calls over HTTP, so this connector serves them with a
:class:`~fedhealth.flower.fleet_bridge.FleetBridge` instead of FLARE's local grpc-adapter server
and starts the SuperNode with :class:`~fedhealth.executors.supernode_applet.SuperNodeApplet`.

The SuperLink's reply to ``GetFab`` carries the Flower app the SuperNode will import and run; the
connector checks it with the site's own policy (:func:`fedhealth.flower.fab_policy.check_fab`)
before the SuperNode sees it. A refused FAB never reaches the SuperNode: the SuperNode is told to
stop, the refusal (site, FAB hash, reason) goes to the site's log and error log, and the site's job
stops (``system_panic``), so the server sees the site fail.

Built by :class:`~fedhealth.executors.flower_site_executor.FlowerSiteExecutor`, not from a job config.
"""

from __future__ import annotations

import flwr.proto.grpcadapter_pb2 as pb2
from flwr.common.constant import GRPC_ADAPTER_METADATA_SHOULD_EXIT_KEY
from flwr.proto.fab_pb2 import GetFabResponse
from nvflare.apis.fl_context import FLContext
from nvflare.app_opt.flower.connectors.grpc_client_connector import GrpcClientConnector
from nvflare.app_opt.flower.utils import reply_should_exit
from nvflare.fuel.utils.network_utils import get_local_addresses

from fedhealth.flower.fab_policy import FabInfo, FabPolicy, FabRefusedError, check_fab
from fedhealth.flower.fleet_bridge import FleetBridge

GET_FAB_REPLY = GetFabResponse.__qualname__  # the grpc-adapter name of the SuperLink's GetFab reply


class FabCheckingConnector(GrpcClientConnector):
    """A :class:`GrpcClientConnector` that bridges a 1.42 SuperNode and refuses unlisted FABs.

    Args:
        policy: the site's Flower apps (its ``local/fedhealth_site.json`` ``flower_apps``).
        site: the site's name (for the messages).
        per_msg_timeout: FLARE ReliableMessage per-message timeout, seconds.
        tx_timeout: FLARE ReliableMessage transaction timeout, seconds.
        client_shutdown_timeout: seconds the SuperNode gets to stop.
    """

    def __init__(
        self,
        *,
        policy: FabPolicy,
        site: str,
        per_msg_timeout: float,
        tx_timeout: float,
        client_shutdown_timeout: float,
    ) -> None:
        super().__init__(
            per_msg_timeout=per_msg_timeout,
            tx_timeout=tx_timeout,
            client_shutdown_timeout=client_shutdown_timeout,
        )
        self.policy = policy
        self.site = site
        self.accepted: list[FabInfo] = []
        self.refusal: str | None = None
        self.bridge: FleetBridge | None = None

    def start(self, fl_ctx: FLContext) -> None:
        """Start the Fleet bridge, then the SuperNode pointed at it."""
        if not self.num_rounds:
            raise RuntimeError("cannot start - num_rounds is not set")
        self.bridge = FleetBridge(self._relay)
        self.bridge.start()
        runtime_addr = get_local_addresses(1)[0]  # the SuperNode's own runtime API, for its ClientApp
        self.logger.info(f"site {self.site}: Fleet bridge at {self.bridge.address}")
        self._start_client(self.bridge.address, runtime_addr, fl_ctx)

    def stop(self, fl_ctx: FLContext) -> None:
        super().stop(fl_ctx)
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None

    def _relay(self, name: str, body: bytes) -> bytes | None:
        request = pb2.MessageContainer(grpc_message_name=name, grpc_message_content=body)
        reply = self.SendReceive(request, None)
        if reply.metadata.get(GRPC_ADAPTER_METADATA_SHOULD_EXIT_KEY) == "true":
            return None
        return reply.grpc_message_content

    def SendReceive(self, request: pb2.MessageContainer, context) -> pb2.MessageContainer:  # noqa: N802 - gRPC's name
        """Relay as FLARE does; check a ``GetFab`` reply before the SuperNode gets it."""
        if self.refusal is not None:
            return reply_should_exit()
        reply = super().SendReceive(request, context)
        if reply.grpc_message_name != GET_FAB_REPLY:
            return reply
        try:
            fab = GetFabResponse.FromString(reply.grpc_message_content).fab
            info = check_fab(fab.content, fab.hash_str, self.policy, site=self.site)
        except FabRefusedError as exc:
            self.refusal = str(exc)
            self.logger.error(self.refusal)
            self._stopping = True
            self._exit_waiter.set()
            self._abort(reason=self.refusal)
            return reply_should_exit()
        self.accepted.append(info)
        fab_id = f"FAB sha256 {info.sha256[:12]}, {info.clientapp}"
        self.logger.info(f"site {self.site} accepts the Flower app {info.name} ({fab_id})")
        return reply
