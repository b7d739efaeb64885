"""Server-side record of what each site's model updates looked like when they arrived.

A ``task_result_filters`` entry in a job's server config (it changes nothing). For every model
update that arrives it writes, to ``fedhealth_update_audit.json`` in the server's run folder (so it
comes back with the job result): the site, task, round, the privacy filters the site's scope
stamped on the update, and per layer the largest change against the global model the server sent
(:func:`fedhealth.policy.update_rules.update_deltas`). A layer a site kept to itself shows 0.
Only sizes of changes are recorded, never data.
"""

from __future__ import annotations

from pathlib import Path

from nvflare.apis.dxo import DataKind
from nvflare.apis.filter import Filter
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import ReservedHeaderKey, Shareable
from nvflare.app_common.abstract.model import ModelLearnableKey
from nvflare.app_common.app_constant import AppConstants

from fedhealth.atomic import write_json
from fedhealth.constants import META_PRIVACY, UPDATE_AUDIT_FILE
from fedhealth.filters.model_update import model_dxo
from fedhealth.policy.update_rules import update_deltas


class UpdateAudit(Filter):
    """Records each arriving model update's per-layer change and privacy stamps (server side)."""

    def __init__(self) -> None:
        super().__init__()
        self._records: list[dict] = []

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        dxo = model_dxo(shareable)
        if dxo is None:
            return shareable
        learnable = fl_ctx.get_prop(AppConstants.GLOBAL_MODEL)
        sent = learnable.get(ModelLearnableKey.WEIGHTS, {}) if learnable else {}
        if dxo.data_kind == DataKind.WEIGHT_DIFF:
            sent = {k: 0.0 * v for k, v in sent.items()}
        peer = fl_ctx.get_peer_context()
        self._records.append(
            {
                "site": peer.get_identity_name() if peer else "",
                "task": shareable.get_header(ReservedHeaderKey.TASK_NAME)
                or fl_ctx.get_prop(FLContextKey.TASK_NAME, ""),
                "round": shareable.get_header(AppConstants.CURRENT_ROUND),
                "data_kind": dxo.data_kind,
                "privacy": dxo.get_meta_prop(META_PRIVACY) or [],
                "max_abs_change": update_deltas(dxo.data, sent) if sent else {},
            }
        )
        workspace = fl_ctx.get_engine().get_workspace()
        path = Path(workspace.get_run_dir(fl_ctx.get_job_id())) / UPDATE_AUDIT_FILE
        write_json(path, self._records)
        return shareable
