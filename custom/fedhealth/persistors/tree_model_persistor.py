"""The global model of a bagging tree job: an empty ensemble over the aligned columns, then the server's.

:meth:`TreeModelPersistor.load_model` starts from a model with no trees over the aligned schema's
columns (``ehr_schema.json`` in the server's run folder, written by the alignment workflow before
training); :meth:`TreeModelPersistor.save_model` writes the global ensemble as ``xgboost_model.json``
(XGBoost's own JSON format) into the run folder after every round: the job result carries it and
:class:`fedhealth.persistors.tree_model_locator.TreeModelLocator` offers it to cross-site evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnable, ModelLearnableKey, make_model_learnable
from nvflare.app_common.abstract.model_persistor import ModelPersistor

from fedhealth.constants import EHR_SCHEMA_FILE
from fedhealth.trees.model import MODEL_FILE, empty_model, model_json, tree_weights


class TreeModelPersistor(ModelPersistor):
    """Keeps the global tree ensemble.

    Args:
        base_score: the probability every tree starts from (the sites' ``params.base_score``).
        num_parallel_tree: trees per boosting round (the sites' ``num_parallel_tree``).
    """

    def __init__(self, *, base_score: float = 0.5, num_parallel_tree: int = 1) -> None:
        super().__init__()
        if not 0.0 < base_score < 1.0 or num_parallel_tree < 1:
            raise ValueError("base_score must lie in (0, 1) and num_parallel_tree be at least 1.")
        self.base_score = base_score
        self.num_parallel_tree = num_parallel_tree

    @staticmethod
    def _run_dir(fl_ctx: FLContext) -> Path:
        return Path(fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()))

    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        path = self._run_dir(fl_ctx) / EHR_SCHEMA_FILE
        if not path.is_file():
            self.system_panic(
                f"no {EHR_SCHEMA_FILE} in the run folder: the alignment workflow runs before training", fl_ctx
            )
            return None
        columns = list(json.loads(path.read_text())["columns"])
        model = empty_model(columns, base_score=self.base_score, num_parallel_tree=self.num_parallel_tree)
        self.log_info(fl_ctx, f"global model: an empty tree ensemble over the {len(columns)} aligned columns")
        return make_model_learnable(tree_weights(model), {})

    def save_model(self, model: ModelLearnable, fl_ctx: FLContext) -> None:
        (self._run_dir(fl_ctx) / MODEL_FILE).write_bytes(model_json(model[ModelLearnableKey.WEIGHTS]))
