"""Non-IID image rows of ``make bench-noniid``: PneumoniaMNIST over 4 sites, Dirichlet alpha 0.1 and 1.0.

Run as ``python scripts/bench_noniid.py --dataset pneumonia`` (``make bench-noniid-cxr``); this
module holds the image half. The pooled PneumoniaMNIST images are dealt over 4 sites by
``Dir(alpha)`` label skew with a simulated scanner per site, and each site's images split 65/15/20
into train / validation / test (stratified). The seed's small CNN is trained by FedAvg, FedProx
(:func:`fedhealth_tools.imaging.federation.run_image_federation`), SCAFFOLD, FedAdam, FedYogi, Ditto and
clustered FL (:func:`fedhealth_tools.training.noniid_federation.run_noniid`, the same algorithm cores as
the heart rows) and FedAvg + local fine-tuning. Hyper-parameters are fixed before the run (not
tuned); the round (fine-tuning: the epoch) is chosen on validation images, the test images are read
once for the chosen models. Each site is scored on its own test images.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fedhealth.imaging.loops import train_images
from fedhealth.models.image_model import ImageModel
from fedhealth.tasks.imaging import ImageSite
from fedhealth.training.loops import LocalTrainConfig
from fedhealth_tools.imaging.converter import medmnist_file
from fedhealth_tools.imaging.federation import run_image_federation
from fedhealth_tools.imaging.noniid_site import split_image_sites
from fedhealth_tools.training.noniid_federation import run_noniid

# Fixed before the run: SGD with heavy-ball momentum 0.9 (what the image loops use for "sgd"),
# SCAFFOLD's control variates with the momentum-effective step lr / (1 - 0.9), FedOpt's server
# settings from Reddi et al. 2021 (server lr 0.01, tau 1e-3), Ditto lambda 0.1 with its personal plain
# SGD at the same effective step (0.1 = 0.01 / (1 - 0.9)), a cluster split allowed
# from round 3 (update cosine below 0), fine-tuning up to 3 local epochs.
SETTINGS = {"lr": 0.01, "batch_size": 32, "optimizer": "sgd", "local_epochs": 1, "mu": 0.01}
NONIID = {
    "scaffold": ("scaffold", {"lr_scale": 10.0}),
    "fedadam": ("fedopt", {"server_opt": "adam", "server_lr": 0.01, "tau": 1e-3}),
    "fedyogi": ("fedopt", {"server_opt": "yogi", "server_lr": 0.01, "tau": 1e-3}),
    "ditto": ("ditto", {"lam": 0.1, "ditto_lr": 0.1}),
    "clustered_updates": ("clustered", {"split_round": 3, "split_threshold": 0.0, "max_clusters": 2}),
}
METHODS = ("fedavg", "fedprox", *NONIID, "finetuned")
FT_EPOCHS = 3


def _num(x: float | None) -> float | None:
    """NaN or None (AUC of a one-class split; the image site reports None) as None."""
    return None if x is None or x != x else float(x)


def _val_score(sites: Sequence[ImageSite], models: dict[str, nn.Module]) -> float:
    """Client-average validation AUC (sites whose val split holds both classes); else minus the loss."""
    evals = [s.evaluate(models[s.name], "val") for s in sites]
    aucs = [e["auc"] for e in evals if _num(e["auc"]) is not None]
    return float(np.mean(aucs)) if aucs else -float(np.mean([e["loss"] for e in evals]))


def score(sites: Sequence[ImageSite], models: dict[str, nn.Module]) -> dict:
    """Per-site test AUC and accuracy, client average (AUC over sites with both classes) and worst site."""
    per_site = {}
    for s in sites:
        m = s.evaluate(models[s.name], "test")
        per_site[s.name] = {
            "auc": _num(m["auc"]),
            "accuracy": m["accuracy"],
            "n_test": len(s.arrays("test")[1]),
        }
    aucs = {k: v["auc"] for k, v in per_site.items() if v["auc"] is not None}
    worst = min(aucs, key=aucs.get) if aucs else None
    return {
        "client_avg": float(np.mean(list(aucs.values()))) if aucs else None,
        "client_avg_sd": None,
        "client_avg_accuracy": float(np.mean([v["accuracy"] for v in per_site.values()])),
        "worst_site": aucs[worst] if worst else None,
        "worst_site_name": worst,
        "worst_site_accuracy": min(v["accuracy"] for v in per_site.values()),
        "per_site": per_site,
    }


def _finetune(sites: Sequence[ImageSite], model: nn.Module, config: LocalTrainConfig, seed: int) -> tuple:
    """Each site fine-tunes the global model locally; keeps the epoch (0 = none) with its best val AUC."""
    chosen, epochs = {}, {}
    for i, site in enumerate(sites):
        local, gen = copy.deepcopy(model), torch.Generator().manual_seed(seed * 100 + i)
        best, best_val, best_epoch = copy.deepcopy(local), _val_score([site], {site.name: local}), 0
        for epoch in range(1, FT_EPOCHS + 1):
            train_images(local, *site.arrays("train"), config, site.spec, augment=False, generator=gen)
            val = _val_score([site], {site.name: local})
            if val > best_val:
                best, best_val, best_epoch = copy.deepcopy(local), val, epoch
        chosen[site.name], epochs[site.name] = best, best_epoch
    return chosen, epochs


def run_method(name: str, sites: Sequence[ImageSite], *, rounds: int, seed: int) -> tuple[dict, nn.Module]:
    """One method's models per site (chosen on validation) and their test scores."""

    def make_model() -> nn.Module:
        return ImageModel("small_cnn", 1, 1, seed=seed)

    if name in ("fedavg", "fedprox"):
        cfg = LocalTrainConfig(**{**SETTINGS, "mu": 0.0 if name == "fedavg" else SETTINGS["mu"]})
        fit = run_image_federation(make_model, sites, cfg, rounds=rounds, seed=seed)
        row = {**score(sites, {s.name: fit.model for s in sites}), "chosen_round": fit.best_round}
        return row | {"selection": "best pooled-validation AUC round"}, fit.model
    algorithm, options = NONIID[name]
    best: dict = {"val": -np.inf}

    def on_round(r: int, models: dict[str, nn.Module]) -> None:
        val = _val_score(sites, models)
        if val > best["val"]:
            best.update(val=val, round=r + 1, models={k: copy.deepcopy(m) for k, m in models.items()})

    result = run_noniid(
        sites,
        make_model,
        algorithm=algorithm,
        rounds=rounds,
        lr=SETTINGS["lr"],
        seed=seed,
        options=options,
        on_round=on_round,
        batch_size=SETTINGS["batch_size"],
        optimizer=SETTINGS["optimizer"],
        local_epochs=SETTINGS["local_epochs"],
    )
    row = {**score(sites, best["models"]), "chosen_round": best["round"], "options": options}
    row["selection"] = "best client-average validation AUC round"
    if result.clusters:
        row["clusters_by_round"] = result.clusters
    return row, result.model


def _mean_rows(rows: list[dict]) -> dict:
    """Seeds averaged: client average +- sd over seeds, worst site and per-site means."""
    sites = list(rows[0]["per_site"])

    def mean(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    per_site = {
        s: {k: mean([r["per_site"][s][k] for r in rows]) for k in ("auc", "accuracy")}
        | {"n_test": rows[0]["per_site"][s]["n_test"]}
        for s in sites
    }
    avgs = [r["client_avg"] for r in rows if r["client_avg"] is not None]
    aucs = {s: v["auc"] for s, v in per_site.items() if v["auc"] is not None}
    worst = min(aucs, key=aucs.get) if aucs else None
    return {
        "client_avg": mean(avgs),
        "client_avg_sd": float(np.std(avgs, ddof=1)) if len(avgs) > 1 else None,
        "client_avg_accuracy": mean([r["client_avg_accuracy"] for r in rows]),
        "worst_site": aucs[worst] if worst else None,
        "worst_site_name": worst,
        "worst_site_accuracy": min(v["accuracy"] for v in per_site.values()),
        "per_site": per_site,
        "by_seed": rows,
    }


def run_pneumonia(
    alpha: float,
    *,
    rounds: int,
    seeds: Sequence[int],
    methods: Sequence[str] = METHODS,
    split_seed: int = 0,
    log=print,
) -> dict:
    """All methods on one Dirichlet split (fixed by ``split_seed``), one training run per seed."""
    data = np.load(medmnist_file("pneumoniamnist"))
    images = np.concatenate([data[f"{s}_images"] for s in ("train", "val", "test")])
    labels = np.concatenate([data[f"{s}_labels"] for s in ("train", "val", "test")]).ravel()
    sites = split_image_sites(images, labels, n_sites=4, alpha=alpha, seed=split_seed)
    table = [
        {
            "site": s.name,
            **{f"n_{k}": len(s.arrays(k)[1]) for k in ("train", "val", "test")},
            "pneumonia_share": round(float(np.concatenate([sp.y for sp in s.splits.values()]).mean()), 3),
        }
        for s in sites
    ]
    for row in table:
        log(f"  {row}")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for seed in seeds:
        fedavg_model = None
        for name in methods:
            tic = time.perf_counter()
            if name == "finetuned":
                if fedavg_model is None:
                    raise ValueError("finetuned needs fedavg earlier in the method list.")
                models, epochs = _finetune(
                    sites, fedavg_model, LocalTrainConfig(**{**SETTINGS, "mu": 0.0}), seed
                )
                row = {
                    **score(sites, models),
                    "epochs_by_site": epochs,
                    "selection": "best own-validation epoch",
                }
            else:
                row, model = run_method(name, sites, rounds=rounds, seed=seed)
                fedavg_model = model if name == "fedavg" else fedavg_model
            row["seconds"] = time.perf_counter() - tic
            runs[name].append(row)
            per = " ".join(f"{v['auc'] or float('nan'):.3f}" for v in row["per_site"].values())
            log(
                f"alpha {alpha} seed {seed} {name:18s} client-avg AUC {row['client_avg']:.3f} "
                f"worst {row['worst_site']:.3f} acc {row['client_avg_accuracy']:.3f} per-site {per} "
                f"({row['seconds']:.0f} s)"
            )
    return {
        "methods": {m: _mean_rows(rows) for m, rows in runs.items()},
        "sites": table,
        "settings": {
            **SETTINGS,
            "rounds": rounds,
            "split_seed": split_seed,
            "n_sites": 4,
            "alpha": alpha,
            "model": "small_cnn",
            "fedprox_mu": SETTINGS["mu"],
            "finetune_epochs": FT_EPOCHS,
            "shift_strength": 0.5,
            "split": "train/val/test 65/15/20 per site, stratified",
            "augment": False,
            "tuning": "none: fixed a priori (see scripts/bench_noniid_cxr.py); round chosen on val",
        },
        "seeds": list(seeds),
    }
