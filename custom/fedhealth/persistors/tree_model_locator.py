"""The tree model the server collected, offered to cross-site evaluation as the global model (``SRV_``)."""

from __future__ import annotations

from pathlib import Path

from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model_locator import ModelLocator

from fedhealth.trees.model import MODEL_FILE, tree_weights

MODEL_NAME = "xgboost"


class TreeModelLocator(ModelLocator):
    """Reads ``xgboost_model.json`` from the server's run folder (written by ``TreeModelCollector``)."""

    def _path(self, fl_ctx: FLContext) -> Path:
        workspace = fl_ctx.get_engine().get_workspace()
        return Path(workspace.get_run_dir(fl_ctx.get_job_id())) / MODEL_FILE

    def get_model_names(self, fl_ctx: FLContext) -> list[str]:
        if self._path(fl_ctx).is_file():
            return [MODEL_NAME]
        self.log_error(fl_ctx, f"no {MODEL_FILE} in the server's run folder: no tree model to evaluate")
        return []

    def locate_model(self, model_name: str, fl_ctx: FLContext) -> DXO | None:
        if model_name != MODEL_NAME or not self._path(fl_ctx).is_file():
            return None
        return DXO(data_kind=DataKind.WEIGHTS, data=tree_weights(self._path(fl_ctx).read_bytes()))
