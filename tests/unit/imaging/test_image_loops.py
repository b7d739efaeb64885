"""Image training and evaluation: loss per task, learning a learnable signal, MONAI per-label AUC, FedProx."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedhealth.imaging.labels import CHESTXRAY14_FINDINGS, LabelSpec
from fedhealth.imaging.loops import binary_view, loss_function, metrics_from_probs, train_images
from fedhealth.models.image_model import ImageModel
from fedhealth.training.loops import LocalTrainConfig

# (task, loss class, AUC the model must reach on its training data)
SPECS = [
    (LabelSpec("binary"), nn.BCEWithLogitsLoss, 0.9),
    (LabelSpec("multiclass", ("a", "b", "c")), nn.CrossEntropyLoss, 0.9),
    (LabelSpec("multilabel", CHESTXRAY14_FINDINGS), nn.BCEWithLogitsLoss, 0.75),  # 14 findings, 96 images
]


def _data(spec: LabelSpec, n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.3, size=(n, 1, 28, 28)).astype(np.float32)
    if spec.task == "multilabel":
        y = (rng.random((n, spec.n_outputs)) < 0.3).astype(np.float32)
        for k in range(spec.n_outputs):
            x[y[:, k] > 0, 0, k, :] += 0.6  # finding k brightens row k
        return x, y
    k = max(2, len(spec.classes))
    y = np.arange(n) % k
    for c in range(k):
        x[y == c, 0, 4 * c : 4 * c + 6, 4:24] += 0.6
    return x, (y.astype(np.float32) if spec.task == "binary" else y.astype(np.int64))


@pytest.mark.parametrize(("spec", "loss_cls", "min_auc"), SPECS, ids=[s[0].task for s in SPECS])
def test_training_learns_each_task(spec: LabelSpec, loss_cls: type, min_auc: float) -> None:
    assert isinstance(loss_function(spec), loss_cls)
    torch.manual_seed(0)
    model = ImageModel("small_cnn", 1, spec.n_outputs)
    x, y = _data(spec)
    before = metrics_from_probs(y, _probs(model, x, spec), spec)
    stats = train_images(
        model,
        x,
        y,
        LocalTrainConfig(lr=0.003, batch_size=16, local_epochs=8, optimizer="adam"),
        spec,
        augment=False,
    )
    after = metrics_from_probs(y, _probs(model, x, spec), spec)
    assert stats["steps"] == 8 * 6 and stats["images_per_s"] > 0
    assert after["loss"] < 0.7 * before["loss"] and after["auc"] > min_auc
    if spec.task != "binary":
        assert set(after["per_label_auc"]) == set(spec.classes)


def _probs(model, x, spec):
    from fedhealth.imaging.loops import predict_images

    return predict_images(model, x, spec, torch.device("cpu"))


def test_per_label_auc_is_none_for_a_label_with_one_class() -> None:
    spec = LabelSpec("multilabel", ("Effusion", "Mass", "Hernia"))
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=float)
    probs = np.array([[0.9, 0.2, 0.1], [0.2, 0.8, 0.3], [0.7, 0.6, 0.2], [0.1, 0.1, 0.6]])
    metrics = metrics_from_probs(y, probs, spec)
    assert metrics["per_label_auc"] == {"Effusion": 1.0, "Mass": 1.0, "Hernia": None}
    assert metrics["auc"] == 1.0 and metrics["accuracy"] == pytest.approx(11 / 12)
    labels, scores = binary_view(y, probs, spec)
    assert labels.tolist() == [1, 1, 1, 0] and scores.tolist() == [0.9, 0.8, 0.7, 0.6]


def test_fedprox_term_keeps_the_model_closer_to_the_global_weights() -> None:
    spec = LabelSpec("binary")
    x, y = _data(spec, n=64)
    distances = []
    for mu in (0.0, 5.0):
        torch.manual_seed(0)
        model = ImageModel("small_cnn", 1, 1)
        start = [p.detach().clone() for p in model.parameters()]
        config = LocalTrainConfig(lr=0.01, batch_size=16, local_epochs=3, mu=mu, optimizer="adam")
        train_images(model, x, y, config, spec, augment=False, generator=torch.Generator().manual_seed(1))
        distances.append(
            sum(float(((p.detach() - s) ** 2).sum()) for p, s in zip(model.parameters(), start, strict=True))
        )
    assert distances[1] < distances[0]
