"""SiteRunner releases an imaging site's metrics under its minimum cell: a tiny val and test split.

Three positive images in val (the imaging round split) and in test: the round's AUC, the operating
point's validation and test figures, and the validation's AUC intervals are withheld; accuracy and
loss on 24 images are not. The site's own ``min_cell_count`` of 3 releases them all.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth import constants as C
from fedhealth.client.base import RoundInput
from fedhealth.client.runner import SiteRunner
from fedhealth.models.state import to_numpy
from fedhealth.tasks.imaging import ImageSite, ImagingTask

LOCAL = {"batch_size": 16, "local_steps": 1, "optimizer": "adam"}
WHY = "fewer than 5 positive patients"


def _split(n: int, n_pos: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos), np.zeros(n - n_pos)].astype(np.float32)
    x = rng.uniform(0, 0.3, size=(n, 1, 28, 28)).astype(np.float32)
    x[y > 0, 0, 8:14, 4:24] += 0.25
    return x, y


@pytest.fixture(scope="module")
def site_and_task() -> tuple[ImageSite, ImagingTask]:
    task = ImagingTask(mixed_precision=False)
    arrays = {"train": _split(32, 12, 0), "val": _split(24, 3, 1), "test": _split(24, 3, 2)}
    return ImageSite.from_arrays("tiny", arrays, task.spec), task


def _runner(site_and_task, settings: dict) -> tuple[SiteRunner, dict]:
    site, task = site_and_task
    runner = SiteRunner(task, site, local=LOCAL, settings=settings)
    return runner, to_numpy(task.build_model(site))


def test_a_tiny_imaging_split_withholds_its_class_wise_metrics(site_and_task) -> None:
    runner, weights = _runner(site_and_task, {})
    state = runner.run_round(RoundInput(weights=weights, lr=0.001, round_index=0, num_rounds=1, extras={}))
    assert state.metrics["global_auc"] is None and 0 <= state.metrics["global_accuracy"] <= 1
    assert state.metrics[C.M_SUPPRESSED] == [f"global_auc: {WHY}"]

    out = runner.validate(weights, n_bootstrap=20)
    assert out[C.M_AUC] is None and out[C.M_LOSS] > 0 and 0 <= out[C.M_ACCURACY] <= 1
    op = out[C.M_OPERATING_POINT]
    assert op["val"] == {"sensitivity": None, "specificity": None, "n_pos": None, "n_neg": None}
    assert op["test"]["sensitivity"]["value"] is None and op["half_failed"] is None
    assert out[C.M_INTERVALS]["auc"]["reason"] == f"suppressed: {WHY}"
    assert (
        f"{C.M_OPERATING_POINT}.val.sensitivity, val.specificity: {WHY} in the validation split"
        in out[C.M_SUPPRESSED]
    )
    assert not any(str(v) in " ".join(out[C.M_SUPPRESSED]) for v in (3, 21, 24))


def test_the_sites_own_minimum_of_three_releases_them(site_and_task) -> None:
    runner, weights = _runner(site_and_task, {C.SITE_MIN_CELL_KEY: 3})
    assert runner.min_cell == 3
    state = runner.run_round(RoundInput(weights=weights, lr=0.001, round_index=0, num_rounds=1, extras={}))
    assert 0 <= state.metrics["global_auc"] <= 1 and C.M_SUPPRESSED not in state.metrics
    out = runner.validate(weights, n_bootstrap=20)
    assert 0 <= out[C.M_AUC] <= 1 and C.M_SUPPRESSED not in out
    assert (out[C.M_OPERATING_POINT]["val"]["n_pos"], out[C.M_INTERVALS]["n_pos"]) == (3, 3)
