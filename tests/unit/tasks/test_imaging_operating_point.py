"""The imaging site's validate: the operating point chosen on val, reported, used by the gate's intervals."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from fedhealth import constants as C
from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import train_images
from fedhealth.models.image_model import ImageModel
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.imaging import ImageSite, ImagingTask
from fedhealth.training.loops import LocalTrainConfig
from fedhealth.training.operating_point import OperatingPointConfig
from fedhealth_tools.imaging.synthetic import write_synthetic_site

SPEC = LabelSpec("binary")
# (operating_point task argument, method, calibration parameter reported)
CONFIG_CASES = [
    ({}, "youden", None),
    ({"method": "target_sensitivity", "target_sensitivity": 0.9}, "target_sensitivity", None),
    ({"calibration": "temperature"}, "youden", "temperature"),
    ({"calibration": "platt"}, "youden", "a"),
]
# (task argument, message fragment)
TASK_ERRORS = [
    ({"method": "best"}, "operating_point.method must be one of"),
    ({"floor": -0.1}, "operating_point.floor must be in [0, 1]"),
    ({"threshhold": 0.3}, "unknown key(s) ['threshhold']"),
]


def _split(n: int, seed: int, prevalence: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Noise images; a positive one has a faint bright band (so scores separate but need not sit at 0.5)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.float32)
    x = rng.uniform(0, 0.3, size=(n, 1, 28, 28)).astype(np.float32)
    x[y > 0, 0, 8:14, 4:24] += 0.25
    return x, y


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, dict]:
    arrays = {"train": _split(96, 0), "val": _split(80, 1), "test": _split(80, 2)}
    torch.manual_seed(0)
    model = ImageModel("small_cnn", 1, 1, seed=0)
    config = LocalTrainConfig(lr=0.003, batch_size=16, local_epochs=3, optimizer="adam")
    train_images(model, *arrays["train"], config, SPEC, augment=False)
    return model, arrays


@pytest.mark.parametrize(
    ("args", "method", "param"), CONFIG_CASES, ids=["youden", "target", "temperature", "platt"]
)
def test_validate_reports_the_operating_point(trained, args, method, param) -> None:
    model, arrays = trained
    site = ImageSite.from_arrays("site_a", arrays, SPEC, operating_point=OperatingPointConfig.from_dict(args))
    metrics = site.validate(model, n_bootstrap=100)
    op = metrics[C.M_OPERATING_POINT]
    assert op["method"] == method and op["chosen_by"] == method and op["reason"] is None
    assert 0.0 < op["threshold"] < 1.0
    assert metrics[C.M_INTERVALS]["threshold"] == op["threshold"]
    assert op["test"]["sensitivity"] == metrics[C.M_INTERVALS]["sensitivity"]
    assert op["val"]["n_pos"] + op["val"]["n_neg"] == 80 and op["val"]["sensitivity"] is not None
    assert {"value", "lo", "hi"} <= set(op["test_at_0_5"]["specificity"])
    if param:
        assert op["calibration"]["params"][param] > 0
    if method == "target_sensitivity":
        assert op["val"]["sensitivity"] >= 0.9


def test_test_labels_do_not_move_the_threshold(trained) -> None:
    model, arrays = trained
    config = OperatingPointConfig(calibration="platt")
    first = ImageSite.from_arrays("a", arrays, SPEC, operating_point=config).validate(model, n_bootstrap=50)
    x, y = arrays["test"]
    permuted = {**arrays, "test": (x, np.random.default_rng(5).permutation(y))}
    second = ImageSite.from_arrays("a", permuted, SPEC, operating_point=config).validate(
        model, n_bootstrap=50
    )
    op1, op2 = first[C.M_OPERATING_POINT], second[C.M_OPERATING_POINT]
    assert op1["threshold"] == op2["threshold"] and op1["calibration"] == op2["calibration"]
    assert first[C.M_INTERVALS]["auc"] != second[C.M_INTERVALS]["auc"]  # the test figures did change


def test_val_labels_do_move_the_threshold(trained) -> None:
    model, arrays = trained
    x, y = arrays["val"]
    flipped = {**arrays, "val": (x, 1.0 - y)}
    base = ImageSite.from_arrays("a", arrays, SPEC).validate(model, n_bootstrap=20)[C.M_OPERATING_POINT]
    other = ImageSite.from_arrays("a", flipped, SPEC).validate(model, n_bootstrap=20)[C.M_OPERATING_POINT]
    assert (base["threshold"], base["chosen_by"]) != (other["threshold"], other["chosen_by"])


@pytest.mark.parametrize(("args", "fragment"), TASK_ERRORS, ids=["method", "floor", "unknown_key"])
def test_task_argument_is_checked_when_the_job_loads(args, fragment) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        ImagingTask(operating_point=args)


def test_load_site_carries_the_job_setting(tmp_path) -> None:
    write_synthetic_site(tmp_path / "data", n=12)
    task = ImagingTask(min_images=4, operating_point={"method": "fixed", "threshold": 0.3})
    site = task.load_site(SiteContext("site_a", tmp_path, settings={}))
    assert site.operating_point == OperatingPointConfig(method="fixed", threshold=0.3)
    assert ImagingTask().operating_point_config() == OperatingPointConfig()
