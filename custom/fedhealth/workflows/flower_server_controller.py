"""The server side of a Flower app under FLARE: FLARE's ``FlowerController`` for Flower 1.42, no installs.

FLARE starts the Flower SuperLink (:class:`~fedhealth.workflows.superlink_applet.SuperLinkApplet`)
and submits the server's installed Flower app (``flower_app_path``, under the server's
``local/custom/``; FLARE's ``server-predeployed-flwr`` mode) with ``flwr run``; the SuperLink
builds the FAB the sites receive. Runtime dependency installation is never on. The sites check the
FAB themselves (:class:`~fedhealth.executors.flower_site_executor.FlowerSiteExecutor`).
"""

from __future__ import annotations

from nvflare.apis.fl_context import FLContext
from nvflare.app_opt.flower.controller import FlowerController

from fedhealth.workflows.superlink_applet import SuperLinkApplet


class FlowerServerController(FlowerController):
    """FLARE's Flower controller with the kit's SuperLink applet.

    Args:
        flower_app_path: the app folder on the server, ``local/custom/<name>`` (its
            ``pyproject.toml`` names installed modules only).
        num_rounds: the rounds FLARE's connectors are told (the app's own are in ``run_config``).
        run_config: ``flwr run --run-config`` values (the app's ``[tool.flwr.app.config]`` keys).
        superlink_ready_timeout: seconds to wait for the SuperLink.
        superlink_grace_period: seconds the SuperLink gets to stop.
        superlink_min_query_interval: seconds between run-status queries.
        monitor_interval: seconds between checks of the Flower processes.
        configure_task_timeout: seconds for the sites' config task.
        start_task_timeout: seconds for the sites' start task.
        max_client_op_interval: seconds a site may stay silent.
        progress_timeout: seconds without progress before the job stops.
    """

    def __init__(
        self,
        *,
        flower_app_path: str,
        num_rounds: int = 1,
        run_config: dict | None = None,
        superlink_ready_timeout: float = 10.0,
        superlink_grace_period: float = 2.0,
        superlink_min_query_interval: float = 10.0,
        monitor_interval: float = 0.5,
        configure_task_timeout: int = 10,
        start_task_timeout: int = 10,
        max_client_op_interval: float = 90.0,
        progress_timeout: float = 3600.0,
    ) -> None:
        super().__init__(
            num_rounds=num_rounds,
            superlink_ready_timeout=superlink_ready_timeout,
            superlink_grace_period=superlink_grace_period,
            superlink_min_query_interval=superlink_min_query_interval,
            monitor_interval=monitor_interval,
            configure_task_timeout=configure_task_timeout,
            start_task_timeout=start_task_timeout,
            max_client_op_interval=max_client_op_interval,
            progress_timeout=progress_timeout,
            run_config=run_config,
            allow_runtime_dependency_installation=False,
            flower_app_path=flower_app_path,
        )

    def get_applet(self, fl_ctx: FLContext) -> SuperLinkApplet:
        return SuperLinkApplet(
            database=self.database,
            superlink_ready_timeout=self.superlink_ready_timeout,
            superlink_grace_period=self.superlink_grace_period,
            superlink_min_query_interval=self.superlink_min_query_interval,
            run_config=self.run_config,
            allow_runtime_dependency_installation=False,
            flower_app_path=self.flower_app_path,
        )
