"""The in-process twin of the CXR jobs: FedAvg/FedProx rounds over image sites, model chosen on validation.

Each round every site trains from the global weights through the one loop
(:func:`fedhealth_tools.federation.loop.run_loop`: the imaging task's own
:class:`~fedhealth.tasks.imaging.ImageSite` s and the executor's ``SiteRunner``) and the server averages
the results weighted by training images (FedAvg, McMahan et al. 2017; with ``mu > 0`` the sites'
``fedprox`` plug-in makes it FedProx, Li et al. 2020), exactly what ``jobs/cxr_fedavg`` and
``jobs/cxr_fedprox`` do over FLARE. The round kept is the one with the best AUC on the pooled
validation images; test images are never looked at here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from fedhealth import constants as C
from fedhealth.imaging.loops import evaluate_images, train_images
from fedhealth.tasks.imaging import ImageSite
from fedhealth.training.loops import LocalTrainConfig
from fedhealth_tools.federation.loop import LoopResult, run_loop
from fedhealth_tools.federation.sites import image_task


@dataclass
class FitResult:
    """The chosen model, the round (or epoch) it came from, and the per-round history."""

    model: nn.Module
    best_round: int
    history: list[dict] = field(default_factory=list)
    images_per_s: float = 0.0


def pooled(sites: Sequence[ImageSite], split: str) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of ``split`` at every site, concatenated."""
    return (
        np.concatenate([s.arrays(split)[0] for s in sites]),
        np.concatenate([s.arrays(split)[1] for s in sites]),
    )


def local_of(config: LocalTrainConfig) -> tuple[dict, list[dict]]:
    """A config's local settings (all but ``lr`` and ``mu``) and its client plug-ins (``fedprox``)."""
    local = {k: v for k, v in config.__dict__.items() if k not in ("lr", "mu")}
    return local, ([{"name": "fedprox", "args": {"mu": config.mu}}] if config.mu else [])


def run_image_federation(
    make_model: Callable[[], nn.Module],
    sites: Sequence[ImageSite],
    config: LocalTrainConfig,
    *,
    rounds: int,
    seed: int = 0,
) -> FitResult:
    """FedAvg (``config.mu == 0``) or FedProx rounds; keeps the round with the best pooled-validation AUC.

    Site ``i`` shuffles with ``seed + i``; augmentation (each site's ``augment``) of round ``r`` uses
    ``seed + r`` at every site.
    """
    model = make_model()
    x_val, y_val = pooled(sites, "val")
    spec = sites[0].spec
    history: list[dict] = []
    best = {"auc": -1.0, "model": copy.deepcopy(model)}

    def on_round(r: int, result: LoopResult) -> None:
        val = evaluate_images(result.model, x_val, y_val, spec)
        history.append({"round": r + 1, "val_auc": val[C.M_AUC], "val_loss": val[C.M_LOSS]})
        if val[C.M_AUC] > best["auc"]:
            best.update(auc=val[C.M_AUC], model=copy.deepcopy(result.model))

    local, algorithms = local_of(config)
    result = run_loop(
        image_task(sites, model),
        sites,
        model,
        rounds=rounds,
        lr=config.lr,
        algorithms=algorithms,
        local=local,
        seeds=[seed] * len(sites),
        shuffle_seeds=[seed + i for i in range(len(sites))],
        on_round=on_round,
    )
    speeds = [m[C.M_IMAGES_PER_S] for metrics in result.rounds for m in metrics.values()]
    best_round = int(np.argmax([h["val_auc"] for h in history])) + 1
    return FitResult(best["model"], best_round, history, float(np.median(speeds)))


def fit_on_one(
    make_model: Callable[[], nn.Module],
    site: ImageSite,
    config: LocalTrainConfig,
    *,
    epochs: int,
    seed: int = 0,
) -> FitResult:
    """Train on one site (pooled or one hospital's) epoch by epoch; keeps the epoch with the best val AUC."""
    model = make_model()
    gen = torch.Generator().manual_seed(seed)
    (x, y), (x_val, y_val) = site.arrays("train"), site.arrays("val")
    best, best_auc, history, speeds = copy.deepcopy(model), -1.0, [], []
    one_epoch = replace(config, local_steps=0, local_epochs=1)
    for epoch in range(epochs):
        stats = train_images(
            model, x, y, one_epoch, site.spec, augment=site.augment, generator=gen, seed=seed + epoch
        )
        speeds.append(stats[C.M_IMAGES_PER_S])
        val = evaluate_images(model, x_val, y_val, site.spec)
        auc = val["auc"] if val["auc"] == val["auc"] else -val["loss"]  # one-class val split: use the loss
        history.append({"epoch": epoch + 1, "val_auc": val["auc"], "val_loss": val["loss"]})
        if auc > best_auc:
            best, best_auc = copy.deepcopy(model), auc
    best_epoch = (
        int(np.argmax([h["val_auc"] if h["val_auc"] == h["val_auc"] else -h["val_loss"] for h in history]))
        + 1
    )
    return FitResult(best, best_epoch, history, float(np.median(speeds)))
