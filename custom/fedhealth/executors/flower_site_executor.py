"""The site side of a Flower app under FLARE, with the site's checks: the kit's ``FlowerExecutor``.

FLARE's :class:`~nvflare.app_opt.flower.executor.FlowerExecutor` starts a Flower SuperNode at the site
and relays its traffic; the Flower app arrives from the server as a FAB, outside FLARE's BYOC check
and the site's class allow-list. This executor is the allow-listed one a kit job names instead:

- every FAB is checked against the site's own ``flower_apps`` setting before the SuperNode runs it
  (:class:`~fedhealth.executors.fab_checking_connector.FabCheckingConnector`,
  :mod:`fedhealth.flower.fab_policy`): no code in the FAB, a ClientApp the site lists, the hash it
  declares (and the site's pinned hashes, if any);
- runtime dependency installation is never on (the SuperNode installs nothing a FAB asks for);
- a job cannot pass environment variables to the Flower processes; the ClientApp gets the site's
  folder (``FEDHEALTH_SITE_ROOT``) from the site, to find the site's own data and settings.

Flower 1.42's SuperNode speaks HTTP, not FLARE 2.9's grpc-adapter: the connector bridges it
(:mod:`fedhealth.flower.fleet_bridge`) and :class:`~fedhealth.executors.supernode_applet.SuperNodeApplet`
starts it with 1.42's options. The site process must run the Python environment that has ``flwr``
(the SuperNode is started from that interpreter's ``bin`` folder).
"""

from __future__ import annotations

from pathlib import Path

from nvflare.apis.fl_context import FLContext
from nvflare.app_opt.flower.defs import Constant
from nvflare.app_opt.flower.executor import FlowerExecutor

from fedhealth.constants import FLOWER_SITE_ROOT_ENV
from fedhealth.data.site_data import site_settings
from fedhealth.executors.fab_checking_connector import FabCheckingConnector
from fedhealth.executors.supernode_applet import SuperNodeApplet
from fedhealth.flower.fab_policy import FabPolicy


class FlowerSiteExecutor(FlowerExecutor):
    """FLARE's Flower executor with the site's FAB check and no runtime installs.

    Args:
        start_task_name: FLARE's Flower "start" task.
        configure_task_name: FLARE's Flower "configure" task.
        per_msg_timeout: seconds per relayed message (FLARE ReliableMessage).
        tx_timeout: seconds per relayed transaction.
        client_shutdown_timeout: seconds the SuperNode gets to stop.
    """

    def __init__(
        self,
        *,
        start_task_name: str = Constant.START_TASK_NAME,
        configure_task_name: str = Constant.CONFIG_TASK_NAME,
        per_msg_timeout: float = 10.0,
        tx_timeout: float = 100.0,
        client_shutdown_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            start_task_name=start_task_name,
            configure_task_name=configure_task_name,
            per_msg_timeout=per_msg_timeout,
            tx_timeout=tx_timeout,
            client_shutdown_timeout=client_shutdown_timeout,
            extra_env=None,
            allow_runtime_dependency_installation=False,
        )

    @staticmethod
    def _site_root(fl_ctx: FLContext) -> Path:
        return Path(fl_ctx.get_engine().get_workspace().get_root_dir())

    def get_connector(self, fl_ctx: FLContext) -> FabCheckingConnector | None:
        site = fl_ctx.get_identity_name()
        try:
            policy = FabPolicy.from_settings(site_settings(self._site_root(fl_ctx)))
        except Exception as exc:  # SiteDataError, ValueError: an unusable setting, named in the message
            self.log_error(fl_ctx, f"site {site} cannot read its Flower app policy: {exc}")
            return None
        if not policy.clientapps:
            self.log_warning(fl_ctx, f"site {site} lists no Flower app: it will refuse any FAB")
        return FabCheckingConnector(
            policy=policy,
            site=site,
            per_msg_timeout=self.per_msg_timeout,
            tx_timeout=self.tx_timeout,
            client_shutdown_timeout=self.client_shutdown_timeout,
        )

    def get_applet(self, fl_ctx: FLContext) -> SuperNodeApplet:
        return SuperNodeApplet(extra_env={FLOWER_SITE_ROOT_ENV: str(self._site_root(fl_ctx))})
