"""The executor's replies withhold a metric of a small cell: a tiny test split of heart patients.

The site's test split is cut to a few positive patients; the train and validate replies must then
carry ``None`` for every class-wise metric and say why in ``suppressed``, under the larger of the
site's ``min_cell_count`` and the job's ``min_cell``. FLARE's own FLContext, DXO and Shareable, as
in ``test_heart_executor.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from flare_doubles import site_context
from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.app_common.app_constant import AppConstants
from site_args import heart

from fedhealth import constants as C
from fedhealth.data.features import combine_moments
from fedhealth.data.site_data import TARGET, write_site
from fedhealth.executors.site_executor import SiteExecutor
from fedhealth.models.state import to_numpy
from fedhealth.models.tabular import TabularNet

SITE = "cleveland"
N_NEG = 20
# (positives in the test split, site's min_cell_count or None, job's min_cell or None, withheld)
CASES = [
    (4, None, None, True),  # default minimum 5
    (5, None, None, False),
    (3, 3, 2, False),  # the site's own 3, which the job does not raise
    (3, 3, None, True),  # the job's default 5 raises the site's 3
    (6, 8, None, True),  # the site's 8
    (6, None, 7, True),  # the job's 7
]
BAD = [0, "5", True, 2.5]
SETTING_ERROR = f"local/{C.SITE_CONFIG_FILE}: '{C.SITE_MIN_CELL_KEY}' must be a whole number >= 1"


def _start(tmp_path: Path, splits: dict, n_pos: int, own: object = None, job: int | None = None):
    train, test = splits[SITE].train, splits[SITE].test
    test = pd.concat([test[test[TARGET] > 0.5].head(n_pos), test[test[TARGET] < 0.5].head(N_NEG)])
    kit = tmp_path / SITE
    (kit / "startup").mkdir(parents=True)
    (kit / "local").mkdir()
    settings = {C.SITE_DATA_ROOT_KEY: "hospital", **({} if own is None else {C.SITE_MIN_CELL_KEY: own})}
    (kit / "local" / C.SITE_CONFIG_FILE).write_text(json.dumps(settings))
    write_site(kit / "hospital", train, test)
    fl_ctx = site_context(kit, SITE, "job-1")
    executor = SiteExecutor(
        **heart(n_bootstrap=20, stream_metrics=False, **({} if job is None else {"min_cell": job}))
    )
    executor.handle_event(EventType.START_RUN, fl_ctx)
    return executor, fl_ctx


def _run(executor: SiteExecutor, task: str, fl_ctx, shareable: Shareable | None = None) -> Shareable:
    return executor.execute(task, shareable if shareable is not None else Shareable(), fl_ctx, Signal())


def _scale(executor: SiteExecutor, fl_ctx) -> None:
    moments = from_shareable(_run(executor, C.TASK_FED_STATS, fl_ctx)).data
    stats = {**combine_moments([{k: moments[k] for k in (C.S_COUNT, C.S_SUM, C.S_SUMSQ)}])}
    stats[C.S_FEATURES] = moments[C.S_FEATURES]
    assert _run(executor, C.TASK_SET_SCALING, fl_ctx, DXO(DataKind.COLLECTION, data=stats).to_shareable())


def _model() -> Shareable:
    shareable = DXO(
        DataKind.WEIGHTS, data=to_numpy(TabularNet(in_features=14, seed=0)), meta={C.META_LEARNING_RATE: 0.05}
    ).to_shareable()
    shareable.set_header(AppConstants.CURRENT_ROUND, 0)
    return shareable


@pytest.mark.parametrize(("n_pos", "own", "job", "withheld"), CASES)
def test_train_and_validate_withhold_the_class_wise_metrics_of_a_small_class(
    tmp_path: Path, heart_splits: dict, n_pos: int, own, job, withheld: bool
) -> None:
    executor, fl_ctx = _start(tmp_path, heart_splits, n_pos, own, job)
    _scale(executor, fl_ctx)
    floor = max(own or 5, job or 5)
    assert executor.runner.min_cell == floor

    validation = from_shareable(_run(executor, C.TASK_VALIDATE, fl_ctx, _model())).data
    iv = validation[C.M_INTERVALS]
    assert validation[C.M_N_TEST] == n_pos + N_NEG and validation[C.M_LOSS] is not None
    if withheld:
        why = f"fewer than {floor} positive patients"
        assert validation[C.M_AUC] is None and 0 <= validation[C.M_ACCURACY] <= 1
        assert iv["accuracy"]["value"] == validation[C.M_ACCURACY]
        assert (iv["n_pos"], iv["n_neg"]) == (None, None)
        assert iv["auc"] == {
            "value": None,
            "lo": None,
            "hi": None,
            "reason": f"suppressed: {why}",
            "suppressed": True,
        }
        assert f"{C.M_AUC}: {why}" in validation[C.M_SUPPRESSED]
        assert f"{C.M_INTERVALS}.sensitivity: {why}" in validation[C.M_SUPPRESSED]
    else:
        assert 0 <= validation[C.M_AUC] <= 1 and 0 <= iv["auc"]["value"] <= 1
        assert (iv["n_pos"], iv["n_neg"]) == (n_pos, N_NEG)
        assert C.M_SUPPRESSED not in validation

    reply = from_shareable(_run(executor, C.TASK_TRAIN, fl_ctx, _model()))
    metrics = reply.get_meta_prop(C.META_SITE_METRICS)
    assert metrics[C.M_TRAIN_LOSS] > 0 and metrics["global_loss"] > 0  # 203 training rows, 24+ test rows
    if withheld:
        assert metrics["global_auc"] is None and 0 <= metrics["global_accuracy"] <= 1  # 24+ patients
        assert metrics[C.M_SUPPRESSED] == [f"global_auc: {why}"]
    else:
        assert 0 <= metrics["global_auc"] <= 1 and C.M_SUPPRESSED not in metrics


@pytest.mark.parametrize("value", BAD)
def test_a_bad_min_cell_count_fails_every_task_and_names_the_file(
    tmp_path: Path, heart_splits: dict, value
) -> None:
    executor, fl_ctx = _start(tmp_path, heart_splits, 5, own=value)
    reply = _run(executor, C.TASK_VALIDATE, fl_ctx, _model())
    assert reply.get_return_code() == ReturnCode.EXECUTION_EXCEPTION
    assert reply.get_header(C.HEADER_ERROR) == f"site {SITE} failed task 'validate': {SETTING_ERROR}"


def test_a_job_min_cell_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="the executor's min_cell must be a whole number >= 1"):
        SiteExecutor(**heart(min_cell=0))
