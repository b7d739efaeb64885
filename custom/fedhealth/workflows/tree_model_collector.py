"""After boosting: the sites' XGBoost model to the server, checked, exported in XGBoost's JSON format.

FLARE's histogram workflow leaves the booster at every site (each rank holds the same trees) and none at
the server. This workflow asks every site for it (``submit_tree_model``, under the site's
``allow_submit_model``), checks that all sites hold the same model (``require_identical``: histogram
mode), and writes it as ``xgboost_model.json`` into the server's run folder: the job result carries it,
``xgboost.Booster().load_model`` reads it, and
:class:`fedhealth.persistors.tree_model_locator.TreeModelLocator` offers it to cross-site evaluation as
the global model.
"""

from __future__ import annotations

from pathlib import Path

from nvflare.apis.controller_spec import Task
from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal

from fedhealth.constants import EVENT_TREE_MODEL, PROP_TREE_MODEL, TASK_SUBMIT_TREE
from fedhealth.trees.model import MODEL_FILE, TreeModel, fingerprint, model_json
from fedhealth.workflows.ehr_alignment_controller import aligned_sites
from fedhealth.workflows.fed_stats_controller import task_failures
from fedhealth.workflows.step_controller import StepController


class TreeModelCollector(StepController):
    """Collects the trained tree model from the sites.

    Args:
        min_clients: sites that must send their model.
        task_timeout: seconds to wait for them.
        require_identical: every site must send the same model (histogram boosting); a site that
            differs ends the job, named.
    """

    def __init__(
        self, *, min_clients: int = 2, task_timeout: int = 120, require_identical: bool = True
    ) -> None:
        super().__init__()
        if min_clients < 1:
            raise ValueError(f"min_clients must be at least 1, got {min_clients}.")
        self.min_clients = min_clients
        self.task_timeout = task_timeout
        self.require_identical = require_identical

    def start_controller(self, fl_ctx: FLContext) -> None:
        self.log_info(fl_ctx, "collecting the trained tree model from the sites")

    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        task = Task(name=TASK_SUBMIT_TREE, data=Shareable(), timeout=self.task_timeout)
        targets = aligned_sites(fl_ctx)  # the sites that trained (None: every participant)
        self.broadcast_and_wait(
            task, fl_ctx, targets=targets, min_responses=self.min_clients, abort_signal=abort_signal
        )
        if abort_signal.triggered:
            return
        failures = task_failures(task.client_tasks)
        models: dict[str, bytes] = {}
        for ct in task.client_tasks:
            if ct.result is not None and ct.result.get_return_code(ReturnCode.OK) == ReturnCode.OK:
                try:
                    models[ct.client.name] = model_json(from_shareable(ct.result).data)
                except ValueError as exc:
                    failures.append(f"site {ct.client.name}: {exc}")
        if failures or len(models) < self.min_clients:
            reason = "; ".join(failures) or f"only {len(models)} of {self.min_clients} sites sent a model"
            self.system_panic(f"tree model collection failed: {reason}", fl_ctx)
            return
        hashes = {site: fingerprint(m) for site, m in models.items()}
        first = sorted(models)[0]
        differ = sorted(s for s, h in hashes.items() if h != hashes[first])
        if self.require_identical and differ:
            self.system_panic(
                f"tree model collection failed: sites {differ} hold another model than {first} "
                "(histogram boosting gives every site the same trees)",
                fl_ctx,
            )
            return
        try:
            model = TreeModel(models[first])
        except ValueError as exc:
            self.system_panic(f"tree model collection failed: site {first}: {exc}", fl_ctx)
            return
        run_dir = Path(fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()))
        (run_dir / MODEL_FILE).write_bytes(model.model_json)
        info = {
            "family": "xgboost",
            "trees": model.n_trees,
            "features": model.in_features,
            "sha256": hashes[first],
            "sites": sorted(models),
            "file": MODEL_FILE,
        }
        self.log_info(
            fl_ctx,
            f"tree model: {model.n_trees} boosting rounds, {model.in_features} features, "
            f"the same at {len(models)} sites; saved as {MODEL_FILE}",
        )
        fl_ctx.set_prop(PROP_TREE_MODEL, info, private=True, sticky=False)
        self.fire_event(EVENT_TREE_MODEL, fl_ctx)
