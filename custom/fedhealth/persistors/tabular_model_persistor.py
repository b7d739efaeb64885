"""The global :class:`~fedhealth.models.tabular.TabularNet` of a job, from plain arguments.

A tabular job does not know its model's width when it is written: the server's alignment
(:class:`~fedhealth.workflows.ehr_alignment_controller.EhrAlignmentController`) decides which
features, categories and missingness indicators the model takes. Without ``in_features`` in
``model_args`` this persistor builds the model when the training workflow first loads it, from
``ehr_schema.json`` in the server's run folder; with it (a task without alignment) it builds it as
given. Its arguments are data only, so a site's component check sees everything a job asks for (a
nested ``{"path": ...}`` model config would name a class the check never sees). Everything else is
FLARE's ``PTFileModelPersistor``.
"""

from __future__ import annotations

import json
from pathlib import Path

from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnable
from nvflare.app_opt.pt.file_model_persistor import PTFileModelPersistor

from fedhealth.constants import EHR_SCHEMA_FILE
from fedhealth.models.tabular import TabularNet

_MODEL_ARGS = ("in_features", "arch", "hidden", "seed")


class TabularModelPersistor(PTFileModelPersistor):
    """``PTFileModelPersistor`` of a ``TabularNet``: ``model_args``; without a width, the aligned schema's.

    Args:
        model_args: ``TabularNet`` arguments (``in_features``, ``arch``, ``hidden``, ``seed``); without
            ``in_features`` the width is the aligned schema's column count.
        **kwargs: ``PTFileModelPersistor``'s other arguments (file names, ``exclude_vars``...).
    """

    def __init__(self, *, model_args: dict | None = None, **kwargs) -> None:
        super().__init__(model=None, **kwargs)
        self.model_args = dict(model_args or {})
        unknown = sorted(set(self.model_args) - set(_MODEL_ARGS))
        if unknown:
            raise ValueError(f"model_args has no argument {unknown}; it takes {list(_MODEL_ARGS)}.")

    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        if self.model is None and "in_features" in self.model_args:
            self.model = TabularNet(**self.model_args)
        if self.model is None:
            run_dir = Path(fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()))
            path = run_dir / EHR_SCHEMA_FILE
            if not path.is_file():
                self.system_panic(
                    f"no {EHR_SCHEMA_FILE} in the run folder: the alignment workflow runs before training",
                    fl_ctx,
                )
                return None
            columns = json.loads(path.read_text())["columns"]
            self.model = TabularNet(in_features=len(columns), **self.model_args)
            self.log_info(fl_ctx, f"global model: TabularNet over the {len(columns)} aligned columns")
        return super().load_model(fl_ctx)
