"""The in-process twin of the CXR jobs: FedAvg/FedProx rounds over image sites, model chosen on validation.

Each round every site trains from the global weights (:func:`fedhealth.imaging.loops.train_images`)
and the server averages the results weighted by training images (FedAvg, McMahan et al. 2017;
with ``mu > 0`` the sites' proximal term makes it FedProx, Li et al. 2020), exactly what
``jobs/cxr_fedavg`` and ``jobs/cxr_fedprox`` do over FLARE. The round kept is the one with the
best AUC on the pooled validation images; test images are never looked at here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import evaluate_images, train_images
from fedhealth.models.state import to_numpy, to_tensors
from fedhealth.training.aggregation import weighted_average
from fedhealth.training.loops import LocalTrainConfig


@dataclass
class ImageData:
    """One site's (or the pool's) train and validation arrays."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


@dataclass
class FitResult:
    """The chosen model, the round (or epoch) it came from, and the per-round history."""

    model: nn.Module
    best_round: int
    history: list[dict] = field(default_factory=list)
    images_per_s: float = 0.0


def _pooled_val(sites: Mapping[str, ImageData]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.concatenate([s.x_val for s in sites.values()]),
        np.concatenate([s.y_val for s in sites.values()]),
    )


def run_image_federation(
    make_model: Callable[[], nn.Module],
    sites: Mapping[str, ImageData],
    spec: LabelSpec,
    config: LocalTrainConfig,
    *,
    rounds: int,
    augment: bool = True,
    seed: int = 0,
) -> FitResult:
    """FedAvg (``config.mu == 0``) or FedProx rounds; keeps the round with the best pooled-validation AUC."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}.")
    model = make_model()
    x_val, y_val = _pooled_val(sites)
    gens = {name: torch.Generator().manual_seed(seed + i) for i, name in enumerate(sites)}
    best, best_auc, history, speeds = copy.deepcopy(model), -1.0, [], []
    for rnd in range(rounds):
        global_state = to_numpy(model)
        updates, weights = [], []
        for name, data in sites.items():
            local = make_model()
            local.load_state_dict(to_tensors(global_state))
            stats = train_images(
                local,
                data.x_train,
                data.y_train,
                config,
                spec,
                augment=augment,
                generator=gens[name],
                seed=seed + rnd,
            )
            speeds.append(stats["images_per_s"])
            updates.append(to_numpy(local))
            weights.append(len(data.y_train))
        model.load_state_dict(to_tensors(weighted_average(updates, weights)))
        val = evaluate_images(model, x_val, y_val, spec)
        history.append({"round": rnd + 1, "val_auc": val["auc"], "val_loss": val["loss"]})
        if val["auc"] > best_auc:
            best, best_auc = copy.deepcopy(model), val["auc"]
    best_round = int(np.argmax([h["val_auc"] for h in history])) + 1
    return FitResult(best, best_round, history, float(np.median(speeds)))


def fit_on_one(
    make_model: Callable[[], nn.Module],
    data: ImageData,
    spec: LabelSpec,
    config: LocalTrainConfig,
    *,
    epochs: int,
    augment: bool = True,
    seed: int = 0,
) -> FitResult:
    """Train on one data set (pooled or one site's) epoch by epoch; keeps the epoch with the best val AUC."""
    model = make_model()
    gen = torch.Generator().manual_seed(seed)
    best, best_auc, history, speeds = copy.deepcopy(model), -1.0, [], []
    one_epoch = LocalTrainConfig(**{**config.__dict__, "local_steps": 0, "local_epochs": 1})
    for epoch in range(epochs):
        stats = train_images(
            model,
            data.x_train,
            data.y_train,
            one_epoch,
            spec,
            augment=augment,
            generator=gen,
            seed=seed + epoch,
        )
        speeds.append(stats["images_per_s"])
        val = evaluate_images(model, data.x_val, data.y_val, spec)
        auc = val["auc"] if val["auc"] == val["auc"] else -val["loss"]  # one-class val split: use the loss
        history.append({"epoch": epoch + 1, "val_auc": val["auc"], "val_loss": val["loss"]})
        if auc > best_auc:
            best, best_auc = copy.deepcopy(model), auc
    best_epoch = (
        int(np.argmax([h["val_auc"] if h["val_auc"] == h["val_auc"] else -h["val_loss"] for h in history]))
        + 1
    )
    return FitResult(best, best_epoch, history, float(np.median(speeds)))
