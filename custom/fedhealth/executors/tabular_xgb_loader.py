"""FLARE's XGBoost executors train on a tabular task's site: the aligned matrix, missing values as NaN.

FLARE's histogram executor (``FedXGBHistogramExecutor``) asks a data loader component for the site's
``DMatrix`` pair once its boosting starts; this loader builds the job's task (``tabular``: the data
dictionary and the site's own ``mapping.json``), loads the site from its own data folder and takes the
schema the alignment workflow left in the run folder (``ehr_schema.json``). With the tree jobs'
imputation ``none`` a missing value stays NaN, which XGBoost routes by a learned default direction.
Nothing of the table leaves the site here; what the boosting sends is FLARE's and XGBoost's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost as xgb
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_context import FLContext
from nvflare.app_opt.xgboost.data_loader import XGBDataLoader

from fedhealth.data.site_data import site_settings
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.registry import build_task
from fedhealth.trees.matrices import site_matrices


class TabularXGBDataLoader(XGBDataLoader, FLComponent):
    """The site's training and test ``DMatrix`` under the aligned schema.

    Args:
        task: the tabular task's registered name (``tabular``).
        task_args: its options, as the site executor's (``dictionary``, ``dataset``).
    """

    def __init__(self, *, task: str = "tabular", task_args: dict | None = None) -> None:
        FLComponent.__init__(self)
        self.task = build_task(task, task_args)  # an unknown task or argument fails the job at start
        self._context: SiteContext | None = None

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.START_RUN:
            workspace = fl_ctx.get_engine().get_workspace()
            root = Path(workspace.get_root_dir())
            run_dir = Path(workspace.get_run_dir(fl_ctx.get_job_id()))
            self._context = SiteContext(fl_ctx.get_identity_name(), root, site_settings(root), run_dir)

    def load_data(self) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        if self._context is None:
            raise RuntimeError("the XGBoost data loader was asked for data before the run started")
        site = self.task.load_site(self._context)
        (x_train, y_train), (x_test, y_test), names = site_matrices(site)
        return _dmatrix(x_train, y_train, names), _dmatrix(x_test, y_test, names)


def _dmatrix(x: np.ndarray, y: np.ndarray, names: list[str] | None) -> xgb.DMatrix:
    return xgb.DMatrix(x, label=y, missing=np.nan, feature_names=names)
