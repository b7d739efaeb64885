"""Per-finding bootstrap intervals from an image site's validate (synthetic labels and images).

All data here are synthetic: random 28x28 images where finding ``k`` brightens row ``k``, labels
drawn at random. Nothing comes from a real patient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedhealth import constants as C
from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import predict_images
from fedhealth.models.image_model import ImageModel
from fedhealth.tasks.imaging import ImageSite
from fedhealth.training.site_metrics import evaluate_with_intervals

FINDINGS = ("Effusion", "Mass", "Hernia")
N_BOOT = 50
# (label task, class names, expected per-finding keys; None: no per_finding in the result)
CASES = [
    ("binary", (), None),
    ("multilabel", FINDINGS, FINDINGS),
    ("multiclass", ("normal", "mild", "severe"), ("normal", "mild", "severe")),
]


def _labels(task: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if task == "binary":
        return (np.arange(n) % 2).astype(np.float32)
    if task == "multiclass":
        return (np.arange(n) % 3).astype(np.int64)
    y = (rng.random((n, len(FINDINGS))) < 0.4).astype(np.float32)
    y[:, 2] = 0  # Hernia absent from every split: its AUC is undefined
    return y


def _site(task: str, classes: tuple[str, ...], n: int = 40) -> ImageSite:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        y = _labels(task, n, rng)
        x = rng.uniform(0, 0.3, size=(n, 1, 28, 28)).astype(np.float32)
        if task == "multilabel":
            for k in range(len(FINDINGS)):
                x[y[:, k] > 0, 0, k, :] += 0.6
        arrays[split] = (x, y)
    return ImageSite.from_arrays("site-1", arrays, LabelSpec(task, classes))


class RowReader(nn.Module):
    """Logit of finding k = brightness of image row k (a perfect reader of the synthetic signal)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10 * (x[:, 0, : len(FINDINGS), :].mean(dim=2) - 0.45)


@pytest.mark.parametrize(("task", "classes", "expected"), CASES, ids=[c[0] for c in CASES])
def test_validate_returns_per_finding_intervals_of_each_finding(
    task: str, classes: tuple[str, ...], expected: tuple[str, ...] | None
) -> None:
    site = _site(task, classes)
    spec = site.spec
    model = ImageModel("small_cnn", 1, spec.n_outputs)
    result = site.validate(model, n_bootstrap=N_BOOT)
    assert C.M_INTERVALS in result  # the "any finding" view stays
    if expected is None:
        assert C.M_PER_FINDING not in result
        return
    per = result[C.M_PER_FINDING]
    assert tuple(per) == expected
    _, y = site.arrays("test")
    probs = predict_images(model, site.arrays("test")[0], spec)
    for k, name in enumerate(expected):
        labels = (y == k) if task == "multiclass" else y[:, k] > 0.5
        assert per[name]["n"] == 40 and per[name]["n_pos"] == int(labels.sum())
        # the same numbers as the metric function on that finding alone (one-vs-rest for classes)
        assert per[name] == evaluate_with_intervals(labels.astype(float), probs[:, k], n_bootstrap=N_BOOT)


def test_a_separable_finding_has_auc_one_and_an_absent_one_the_undefined_reason() -> None:
    site = _site("multilabel", FINDINGS)
    per = site.validate(RowReader(), n_bootstrap=N_BOOT)[C.M_PER_FINDING]
    for name in ("Effusion", "Mass"):
        assert per[name]["auc"]["value"] == pytest.approx(1.0)
        assert per[name]["auc"]["lo"] == pytest.approx(1.0)
    hernia = per["Hernia"]
    assert hernia["n_pos"] == 0 and hernia["auc"]["value"] is None and hernia["auc"]["lo"] is None
    assert (
        hernia["auc"]["reason"] == "AUC undefined: the split holds one class only (0 positive, 40 negative)"
    )
