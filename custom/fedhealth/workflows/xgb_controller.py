"""FLARE's histogram XGBoost controller, fitted to a job with workflows after it.

FLARE's ``XGBFedController`` stops its boosting by triggering the abort signal it was given, which is the
run's: every workflow after it (collecting the model, cross-site evaluation) would see an aborted run and
skip its work. This controller hands it a child signal: an admin's abort or a system panic still stops
the boosting, the end of the boosting no longer stops the job.
"""

from __future__ import annotations

from nvflare.apis.fl_context import FLContext
from nvflare.apis.signal import Signal
from nvflare.app_opt.xgboost.histogram_based_v2.fed_controller import XGBFedController


class XGBHistogramController(XGBFedController):
    """``XGBFedController`` whose normal end does not abort the run (same arguments)."""

    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        super().control_flow(Signal(parent=abort_signal), fl_ctx)
