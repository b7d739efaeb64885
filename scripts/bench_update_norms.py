"""Per-round L2 norms of site updates in the HE jobs' settings: what ``UpdateGuard``'s bound lets pass.

Under HE the server cannot check an encrypted update, so each site clips its own update to the job's
``max_norm`` (:class:`fedhealth.filters.update_guard.UpdateGuard`) before encryption. The bound must
sit a few times above a normal round's norm, so normal rounds are never clipped. This script runs
the in-process twins of the HE jobs (the FLARE executor's own :class:`~fedhealth.client.runner.SiteRunner`
under FedAvg) with the jobs' settings and records the norm of every site's update over all layers
(local weights minus the global weights it received):

- ``heart_he``: logistic regression, SGD lr 0.1, batch 16, 1 local epoch, 25 rounds, 4 UCI hospitals;
- ``heart_he_dp``: the same with DP-SGD (target ε 5, per-example clip 1.0, RDP), 15 rounds;
- ``cxr_he``: the small CNN on PneumoniaMNIST 28 px (z-scored per image, augmented), 4 Dirichlet(0.5)
  sites, Adam lr 0.001, batch 64, 1 local epoch, 20 rounds.

Usage: ``python scripts/bench_update_norms.py`` (writes ``results/bench_update_norms.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from fedhealth.constants import HEART_SITES
from fedhealth.data.site_data import TARGET, SiteTable
from fedhealth.imaging.labels import LabelSpec
from fedhealth.models.image_model import ImageModel
from fedhealth.models.tabular import TabularNet
from fedhealth.tasks.imaging import ImageSite
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.data.heart_source import load_heart_sites
from fedhealth_tools.federation.loop import run_loop
from fedhealth_tools.federation.sites import image_task
from fedhealth_tools.imaging.converter import medmnist_file
from fedhealth_tools.imaging.noniid_site import split_image_sites
from fedhealth_tools.training.federation import federated_scaling, run_federation

HEART = {"rounds": 25, "lr": 0.1, "batch_size": 16, "local_epochs": 1}
HEART_DP = {**HEART, "rounds": 15}
DP = {"target_epsilon": 5.0, "max_grad_norm": 1.0, "accountant": "rdp", "rounds": 15}
CXR = {"rounds": 20, "lr": 0.001, "batch_size": 64, "local_epochs": 1, "optimizer": "adam"}
HEART_SEEDS, CXR_SEEDS = (0, 1, 2), (0, 1)


class NormChannel:
    """Records the L2 norm (all layers together) of each site's update and passes the weights on."""

    def __init__(self) -> None:
        self.norms: list[list[float]] = []  # per round, one norm per site
        self.by_site: dict[str, list[float]] = {}
        self._seen: set[str] = set()

    def __call__(self, site: str, weights: dict, start: dict) -> dict:
        if site in self._seen or not self.norms:
            self.norms.append([])
            self._seen = set()
        self._seen.add(site)
        sq = sum(float(np.sum((np.asarray(weights[k], np.float64) - start[k]) ** 2)) for k in weights)
        self.norms[-1].append(float(np.sqrt(sq)))
        self.by_site.setdefault(site, []).append(float(np.sqrt(sq)))
        return weights


def _summary(runs: list[NormChannel]) -> dict:
    every = [n for run in runs for rnd in run.norms for n in rnd]
    later = [n for run in runs for rnd in run.norms[1:] for n in rnd]
    first = [n for run in runs for n in run.norms[0]]
    q = {"p10": 0.1, "median": 0.5, "p90": 0.9}
    return {
        "updates": len(every),
        **{name: float(np.quantile(every, p)) for name, p in q.items()},
        "max": float(np.max(every)),
        "round0_max": float(np.max(first)),
        "later_rounds_median": float(np.median(later)),
        "per_site_median": {
            site: float(np.median([n for run in runs for n in run.by_site.get(site, [])]))
            for site in runs[0].by_site
        },
        "per_round_median": [
            float(np.median([n for run in runs for n in run.norms[i]])) for i in range(len(runs[0].norms))
        ],
    }


def _heart_sites() -> list[HeartSite]:
    splits = load_heart_sites()

    def table(frame) -> SiteTable:
        return SiteTable(features=frame.drop(columns=TARGET), labels=frame[TARGET].to_numpy("float32"))

    sites = [HeartSite(n, table(splits[n].train), table(splits[n].test)) for n in HEART_SITES]
    federated_scaling(sites)
    return sites


def heart(dp: dict | None) -> dict:
    settings = HEART_DP if dp else HEART
    runs = []
    for seed in HEART_SEEDS:
        channel = NormChannel()
        run_federation(
            _heart_sites(),
            lambda: TabularNet(in_features=14, arch="logreg", seed=0),
            rounds=settings["rounds"],
            lr=settings["lr"],
            seed=seed,
            channel=channel,
            dp=dp,
            batch_size=settings["batch_size"],
            local_epochs=settings["local_epochs"],
        )
        runs.append(channel)
    return {"settings": {**settings, "dp": dp, "seeds": list(HEART_SEEDS)}, **_summary(runs)}


def _zscore(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / np.where(std > 0, std, 1.0)


def cxr() -> dict:
    data = np.load(medmnist_file("pneumoniamnist"))
    images = np.concatenate([data[f"{s}_images"] for s in ("train", "val", "test")])
    labels = np.concatenate([data[f"{s}_labels"] for s in ("train", "val", "test")]).ravel()
    split = split_image_sites(images, labels, n_sites=4, alpha=0.5, seed=0)
    sites = [
        ImageSite.from_arrays(
            s.name,
            {k: (_zscore(s.arrays(k)[0]), s.arrays(k)[1]) for k in ("train", "val", "test")},
            LabelSpec("binary"),
            augment=True,
        )
        for s in split
    ]
    runs = []
    local = {k: CXR[k] for k in ("batch_size", "local_epochs", "optimizer")}
    for seed in CXR_SEEDS:
        model = ImageModel(arch="small_cnn", in_channels=1, num_classes=1)
        channel = NormChannel()
        run_loop(
            image_task(sites, model),
            sites,
            model,
            rounds=CXR["rounds"],
            lr=CXR["lr"],
            local=local,
            seeds=[seed] * len(sites),
            shuffle_seeds=[seed + i for i in range(len(sites))],
            channel=channel,
        )
        runs.append(channel)
    n_params = sum(p.numel() for p in ImageModel(arch="small_cnn", in_channels=1, num_classes=1).parameters())
    return {
        "settings": {**CXR, "sites": 4, "alpha": 0.5, "seeds": list(CXR_SEEDS), "parameters": n_params},
        "n_train": {s.name: s.n_train for s in sites},
        **_summary(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("results/bench_update_norms.json"))
    parser.add_argument("--only", choices=("heart_he", "heart_he_dp", "cxr_he"), nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    runs = {"heart_he": lambda: heart(None), "heart_he_dp": lambda: heart(DP), "cxr_he": cxr}
    out = {name: run() for name, run in runs.items() if not args.only or name in args.only}
    out["setup"] = {"machine": platform.platform(), "threads": 1, "seconds": round(time.time() - started, 1)}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for name, row in out.items():
        if name != "setup":
            print(name, {k: round(v, 4) for k, v in row.items() if isinstance(v, float)})


if __name__ == "__main__":
    main()
