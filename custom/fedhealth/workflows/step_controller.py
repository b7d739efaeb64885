"""The base of the kit's own workflows: nothing to start or stop, and a late result is logged, not used.

FLARE's ``Controller`` leaves three methods abstract; the kit's controllers (federated statistics, the
EHR alignment, clustered FL, the tree model collector) all answer them the same way.
"""

from __future__ import annotations

from nvflare.apis.client import Client
from nvflare.apis.fl_context import FLContext
from nvflare.apis.impl.controller import Controller
from nvflare.apis.shareable import Shareable


class StepController(Controller):
    """``Controller`` with no start-up or tear-down; a result that arrives after its task ended is ignored."""

    def start_controller(self, fl_ctx: FLContext) -> None:
        pass

    def stop_controller(self, fl_ctx: FLContext) -> None:
        pass

    def process_result_of_unknown_task(
        self, client: Client, task_name: str, client_task_id: str, result: Shareable, fl_ctx: FLContext
    ) -> None:
        self.log_warning(fl_ctx, f"late result for {task_name} from {client.name} ignored")
