"""The privacy–utility curve on chest X-rays: PneumoniaMNIST test AUC against ε, FedAvg over 4 sites.

PneumoniaMNIST (MedMNIST v2, Yang et al. 2023) is dealt to four sites by the converter's own
Dirichlet(α) label skew (:func:`fedhealth_tools.imaging.converter.dirichlet_split`, the split of
``scripts/bench_cxr.py``: the same draw as that benchmark for the same seed, here on the arrays, without
the DICOM round trip). For every ε the sites train the small CNN with DP-SGD (Abadi et al. 2016)
through the executor's own ``dp_sgd`` plug-in in the one loop
(:func:`fedhealth_tools.federation.loop.run_loop`), one privacy engine per site sized for the whole job;
the server averages by training images (FedAvg, McMahan et al. 2017). ε = ∞ is the same federation
without DP (:func:`fedhealth_tools.imaging.federation.run_image_federation`, no augmentation, the same
optimizer; 10 rounds of one local epoch at batch 64, as published before). The DP rows use
:data:`DP_SETTINGS`, chosen on pooled validation AUC by the search logged in
:mod:`fedhealth_tools.privacy.cxr_dp_search` (larger batches with the noise the accountant sizes,
De et al. 2022; more rounds of fewer local steps). The round kept is the one with the best pooled
validation AUC; test images are read only for the final numbers.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedhealth.constants import M_ACCURACY, M_AUC
from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import evaluate_images
from fedhealth.privacy.dp_sgd import make_dp_compatible
from fedhealth.tasks.imaging import ImageSite
from fedhealth.training.loops import LocalTrainConfig
from fedhealth_tools.federation.loop import LoopResult, run_loop
from fedhealth_tools.federation.sites import image_task
from fedhealth_tools.imaging.federation import pooled, run_image_federation

EPSILONS: tuple[float | None, ...] = (1.0, 2.0, 5.0, 10.0, 50.0, None)  # None: no DP (ε = ∞)
SEEDS = (0, 1, 2)
SPEC = LabelSpec("binary")
ALPHA, SPLIT_SEED, N_SITES = 0.5, 0, 4
LR_GRID = (1e-3,)  # ε = ∞: 1e-3 beat 3e-3 on validation AUC in the earlier curve (10 rounds, batch 64)
SETTINGS = {"rounds": 10, "lr": 1e-3, "batch_size": 64, "max_grad_norm": 1.0, "optimizer": "adam"}
# Every DP ε: the setting with the best pooled validation AUC in the coarse search (TRIED).
DP_SETTINGS = {**SETTINGS, "rounds": 40, "local_steps": 2, "batch_size": 256, "lr": 1e-2}
DP_LR_GRID = (1e-2,)


PROTOCOL = (
    "FedAvg; eps=inf: settings (1 local epoch a round), lr from lr_grid; every finite eps: dp_settings "
    "(local_steps DP-SGD steps a round) at each site via the dp_sgd plug-in and privacy.site_dp."
    "site_trainer (RDP, delta=0.1/n), lr from dp_lr_grid; dp_settings were chosen by a coarse search at "
    "seed 0 at eps=1 on pooled VALIDATION AUC only (every setting tried and its validation AUC: tried); "
    "lr chosen per epsilon by pooled validation AUC at the first seed; round kept by pooled validation "
    "AUC; test images read once, for the final numbers"
)


def _standardise(images: np.ndarray) -> np.ndarray:
    """``uint8`` images to float ``(n, 1, S, S)``, z-scored per image (the site pipeline's ``zscore``)."""
    x = images.astype("float32") / 255.0
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1e-6)
    return x[:, None]


def cxr_sites(
    npz: Path | None = None, *, alpha: float = ALPHA, seed: int = SPLIT_SEED, limit: int | None = None
) -> list[ImageSite]:
    """PneumoniaMNIST's train/val/test dealt to four sites by one Dirichlet(α) draw (``limit``: per split)."""
    from fedhealth_tools.imaging.converter import dirichlet_split, medmnist_file

    data = np.load(npz or medmnist_file("pneumoniamnist"))
    rng = np.random.default_rng(seed)
    images, labels = {}, {}
    for split in ("train", "val", "test"):
        x, y = data[f"{split}_images"], data[f"{split}_labels"].ravel().astype(np.int64)
        keep = np.arange(len(y))
        if limit is not None and len(y) > limit:
            keep = np.sort(rng.choice(len(y), size=limit, replace=False))
        images[split], labels[split] = _standardise(x[keep]), y[keep].astype("float32")
    parts = dirichlet_split(labels, N_SITES, alpha, rng)
    return [
        ImageSite.from_arrays(
            f"site_{chr(ord('a') + i)}",
            {s: (images[s][parts[s][i]], labels[s][parts[s][i]]) for s in parts},
            SPEC,
        )
        for i in range(N_SITES)
    ]


def run_dp_image_federation(
    make_model: Callable[[], nn.Module],
    sites: Sequence[ImageSite],
    *,
    epsilon: float,
    rounds: int,
    lr: float,
    batch_size: int,
    max_grad_norm: float,
    optimizer: str = "adam",
    seed: int = 0,
    augmult: int = 0,
    local_steps: int = 0,
) -> tuple[nn.Module, dict[str, dict], list[dict]]:
    """FedAvg with DP-SGD at every site; the best-validation model, each site's final ε and δ, the history.

    ``augmult``: the plug-in's augmentation multiplicity K; ``local_steps``: DP-SGD steps a round
    (0: one local epoch).
    """
    model, _ = make_dp_compatible(make_model())
    x_val, y_val = pooled(sites, "val")
    best, history = {"auc": -1.0, "model": copy.deepcopy(model)}, []

    def on_round(r: int, result: LoopResult) -> None:
        val = evaluate_images(result.model, x_val, y_val, SPEC)
        history.append({"round": r + 1, "val_auc": val[M_AUC]})
        if val[M_AUC] > best["auc"]:
            best.update(auc=val[M_AUC], model=copy.deepcopy(result.model))

    dp = {"target_epsilon": epsilon, "max_grad_norm": max_grad_norm, "augmult": augmult}
    result = run_loop(
        image_task(sites, model),
        sites,
        model,
        rounds=rounds,
        lr=lr,
        algorithms=[{"name": "dp_sgd", "args": dp}],
        local={
            "batch_size": batch_size,
            "local_epochs": 1,
            "local_steps": local_steps,
            "optimizer": optimizer,
        },
        dp_seeds=[seed * 100 + i for i in range(len(sites))],
        on_round=on_round,
    )
    trainers = {n: r.algorithm("dp_sgd").trainer for n, r in result.runners.items()}  # type: ignore[union-attr]
    ledgers = {n: {"epsilon": t.epsilon, "delta": t.delta} for n, t in trainers.items()}
    return best["model"], ledgers, history


def train_once(
    sites: Sequence[ImageSite], epsilon: float | None, settings: Mapping, seed: int
) -> tuple[nn.Module, dict[str, dict], list[dict]]:
    """One federation at ``epsilon`` (None: no DP) from the small CNN seeded with ``seed``."""
    from fedhealth.models.image_model import ImageModel

    act = str(settings.get("act", "relu"))

    def make_model() -> nn.Module:
        return ImageModel("small_cnn", 1, 1, seed=seed, act=act)

    rounds, lr, batch = int(settings["rounds"]), float(settings["lr"]), int(settings["batch_size"])
    if epsilon is None:
        steps = int(settings.get("local_steps", 0))  # 0: one epoch a round
        config = LocalTrainConfig(
            lr=lr, batch_size=batch, optimizer=str(settings["optimizer"]), local_steps=steps
        )
        fit = run_image_federation(make_model, sites, config, rounds=rounds, seed=seed)
        return fit.model, {}, fit.history
    return run_dp_image_federation(
        make_model,
        sites,
        epsilon=epsilon,
        rounds=rounds,
        lr=lr,
        batch_size=batch,
        max_grad_norm=float(settings["max_grad_norm"]),
        optimizer=str(settings["optimizer"]),
        seed=seed,
        augmult=int(settings.get("augmult", 0)),
        local_steps=int(settings.get("local_steps", 0)),
    )


def tune_lr(
    sites: Sequence[ImageSite],
    epsilon: float | None,
    settings: Mapping,
    seed: int,
    grid: Sequence[float],
) -> tuple[float, dict[float, float], tuple]:
    """The learning rate with the best pooled validation AUC at ``seed`` (test never read), and its run."""
    runs = {lr: train_once(sites, epsilon, {**settings, "lr": lr}, seed) for lr in grid}
    scores = {lr: max(h["val_auc"] for h in run[2]) for lr, run in runs.items()}
    best = max(scores, key=scores.get)
    return best, scores, runs[best]


def evaluate_epsilon(
    sites: Sequence[ImageSite],
    epsilon: float | None,
    settings: Mapping,
    seeds: Sequence[int],
    done: Mapping[int, tuple] | None = None,
) -> dict:
    """Train once per seed (``done``: runs already made, by seed) and score AUC and accuracy on test."""
    x_test = np.concatenate([s.arrays("test")[0] for s in sites])
    y_test = np.concatenate([s.arrays("test")[1] for s in sites])
    aucs, accs, achieved, deltas, best_rounds = [], [], [], [], []
    for seed in seeds:
        run = (done or {}).get(seed) or train_once(sites, epsilon, settings, seed)
        model, ledgers, history = run
        scores = evaluate_images(model, x_test, y_test, SPEC)
        aucs.append(float(scores[M_AUC]))
        accs.append(float(scores[M_ACCURACY]))
        best_rounds.append(int(np.argmax([h["val_auc"] for h in history])) + 1)
        if ledgers:
            achieved.append(max(v["epsilon"] for v in ledgers.values()))
            deltas.append(max(v["delta"] for v in ledgers.values()))
    sd = float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0
    return {
        "target_epsilon": epsilon,
        "achieved_epsilon": max(achieved) if achieved else None,
        "delta": max(deltas) if deltas else None,
        "metric": "pooled test AUC",
        "metric_mean": float(np.mean(aucs)),
        "metric_sd": sd,
        "metric_per_seed": aucs,
        "accuracy_mean": float(np.mean(accs)),
        "accuracy_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
        "best_round_per_seed": best_rounds,
    }


REFERENCE_LR_GRID = (3e-3, 1e-2)  # ε = ∞ on the DP rows' schedule: chosen on validation AUC at the first seed


def reference_row(
    sites: Sequence[ImageSite],
    seeds: Sequence[int],
    dp_settings: Mapping,
    grid: Sequence[float] = REFERENCE_LR_GRID,
) -> dict:
    """No DP on the DP rows' own schedule (rounds, local steps, batch), lr chosen on validation.

    The fair ε = ∞ for the DP rows: their gain over the curve's ε = ∞ row (the earlier schedule) is the
    schedule's, not DP's; the cost of DP is measured against this row.
    """
    settings = {k: v for k, v in dp_settings.items() if k != "augmult"}
    lr, val_auc, first = tune_lr(sites, None, settings, seeds[0], grid)
    row = evaluate_epsilon(sites, None, {**settings, "lr": lr}, seeds, {seeds[0]: first})
    row["lr"], row["val_auc_by_lr"] = lr, {f"{k:g}": v for k, v in val_auc.items()}
    row["batch_size"], row["schedule"] = int(settings["batch_size"]), "the DP rows' (dp_settings)"
    return row


def run_cxr_curve(
    *,
    epsilons: Sequence[float | None] = EPSILONS,
    seeds: Sequence[int] = SEEDS,
    settings: Mapping | None = None,
    lr_grid: Sequence[float] = LR_GRID,
    dp_settings: Mapping | None = None,
    dp_lr_grid: Sequence[float] = DP_LR_GRID,
    tried: Sequence[Mapping] | None = None,
    npz: Path | None = None,
    limit: int | None = None,
    out_json: Path | None = None,
    out_png: Path | None = None,
) -> dict:
    """The CXR curve: every ε tuned on validation, then ``seeds``; writes the JSON and the PNG.

    ``settings`` and ``lr_grid`` serve ε = ∞ (no DP), ``dp_settings`` and ``dp_lr_grid`` every finite ε;
    ``tried`` is the validation search that chose them (default :data:`~fedhealth_tools.privacy.
    cxr_dp_search.TRIED`), copied into the JSON.
    """
    import os
    import platform

    from fedhealth_tools.privacy.cxr_dp_search import TRIED
    from fedhealth_tools.privacy.utility_curve import plot_curve

    torch.set_num_threads(1)  # 2 cores shared with other work here
    settings = {**SETTINGS, **(settings or {})}
    dp_settings = {**DP_SETTINGS, **(dp_settings or {})}
    start = time.time()
    sites = cxr_sites(npz, limit=limit)
    rows = []
    for epsilon in epsilons:
        chosen, grid = (settings, lr_grid) if epsilon is None else (dp_settings, dp_lr_grid)
        lr, val_auc, first = tune_lr(sites, epsilon, chosen, seeds[0], grid)
        row = evaluate_epsilon(sites, epsilon, {**chosen, "lr": lr}, seeds, {seeds[0]: first})
        row["lr"], row["val_auc_by_lr"] = lr, {f"{k:g}": v for k, v in val_auc.items()}
        row["batch_size"] = int(chosen["batch_size"])
        rows.append(row)
        label = "inf" if epsilon is None else f"{epsilon:g}"
        print(f"epsilon={label}: AUC {row['metric_mean']:.4f} ± {row['metric_sd']:.4f}", flush=True)
    reference = reference_row(sites, seeds, dp_settings)
    print(f"epsilon=inf on the DP schedule: AUC {reference['metric_mean']:.4f}", flush=True)
    result = {
        "dataset": f"PneumoniaMNIST 28x28, {N_SITES} sites by Dirichlet(alpha={ALPHA}) label skew "
        f"(split seed {SPLIT_SEED}), per-image z-score, small CNN",
        "protocol": PROTOCOL,
        "lr_grid": list(lr_grid),
        "settings": settings,
        "dp_lr_grid": list(dp_lr_grid),
        "dp_settings": dp_settings,
        "tried": [dict(t) for t in (TRIED if tried is None else tried)],
        "sites": {s.name: {k: len(v) for k, v in s.splits.items()} for s in sites},
        "seeds": list(seeds),
        "rows": rows,
        "reference_same_schedule": reference,
        "hardware": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": 1,
            "load_average": list(os.getloadavg()),
        },
        "seconds": time.time() - start,
    }
    if out_json is not None:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(result, indent=2) + "\n")
    if out_png is not None:
        plot_curve(
            result,
            Path(out_png),
            title=f"PneumoniaMNIST, 4 sites: privacy–utility ({len(seeds)} seeds)",
            ylabel="pooled test AUC",
        )
    return result


def cxr_table(result: dict) -> str:
    """The CXR curve as a Markdown table: test AUC against the non-private row, lr and accuracy."""
    from fedhealth_tools.privacy.utility_curve import table

    extra = {"lr": "{lr:g}", "accuracy": "{accuracy_mean:.3f} ± {accuracy_sd:.3f}"}
    return table(result, metric="test AUC", extra=extra)
