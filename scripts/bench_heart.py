"""Fed-Heart-Disease benchmark: FLamby's protocol, then the kit's defaults, five seeds each.

Run as ``python scripts/bench_heart.py --out results/bench_heart.json`` (``make bench-heart``).

Block 1 repeats FLamby (du Terrail et al. 2022; ``flamby/benchmarks/fed_benchmark.py`` and
``flamby/datasets/fed_heart_disease``): per-site scaling, logistic regression, batch 4; pooled and
local training with Adam (lr 1e-3, 50 epochs); FedAvg and FedProx (mu 0.01) with SGD (lr 1e-3),
100 local steps a round for 15 rounds, the budget of pooled training. As in FLamby, every test set
is scaled with its own hospital's statistics and the pooled test set with the pooled ones.

Block 2 is the kit's default (batch 16, the hospitals' default floor): federated global scaling,
cholesterol 0 read as missing with an indicator, logistic regression and MLP. Learning rate, rounds
(epochs), local epochs, FedProx's mu, the MLP's width and weight decay and the fine-tuning are
chosen by federated cross-validation inside the training splits
(``fedhealth_tools.training.tuning``); the test splits are read only for the final figures. Metric:
accuracy at 0.5; "client-average" is the mean over the four hospitals."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fedhealth.constants import HEART_SITES, M_ACCURACY
from fedhealth.data.site_data import RAW_COLUMNS, TARGET, SiteTable
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.data.heart_source import load_heart_sites
from fedhealth_tools.training.federation import federated_scaling
from fedhealth_tools.training.trainers import (
    FT_SCOPES,
    Model,
    Trainer,
    centralized_trainer,
    federated_trainer,
    finetuned_trainer,
)
from fedhealth_tools.training.tuning import (
    CVScore,
    grid,
    make_folds,
    model_for,
    tune,
    tune_per_site,
)

SEEDS = (42, 43, 44, 45, 46)  # FLamby's benchmark seeds
# FLamby's results (flamby/results/results_benchmark_fed_heart_disease/heart_seed42..46.csv).
FLAMBY = {
    "flamby_pooled": {"client_avg": 0.735, "pooled_test": 0.795},
    "flamby_fedavg": {"client_avg": 0.685, "pooled_test": 0.748},
    "flamby_fedprox": {"client_avg": 0.685, "pooled_test": 0.748},
    "best_fl": {"client_avg": 0.731, "pooled_test": 0.779},  # FedAdagrad / FedYogi
}
FLAMBY_LOCAL = {"cleveland": 0.722, "hungary": 0.629, "switzerland": 0.567, "va_long_beach": 0.637}
CV_FOLDS, CV_REPEATS, TUNE_SEED = 3, 2, 0
MAX_ROUNDS, MAX_EPOCHS, MAX_FT_EPOCHS = 40, 30, 10
# The kit's jobs train at the hospitals' default floor (site limits: batch >= 16, lr <= 1.0).
BATCH_SIZE = 16
LRS = (0.01, 0.03, 0.1, 0.3, 1.0)  # SGD, batch BATCH_SIZE, one local epoch a round
MLP_SHAPES = grid(hidden=[8, 32], weight_decay=[0.0, 1e-2])
MUS = (0.01, 0.1, 1.0)
GAMMAS = (1.0, 0.95)  # per-round learning-rate decay, lr * gamma ** round (the seed's schedule: 0.95)
FT_LRS = (0.01, 0.03, 0.1)
AIM_CLIENT_AVG, AIM_WORST = 0.80, 0.78
Tables = dict[str, tuple[SiteTable, SiteTable]]


def _table(df: pd.DataFrame) -> SiteTable:
    return SiteTable(features=df[list(RAW_COLUMNS)].astype("float64"), labels=df[TARGET].to_numpy("float32"))


def load_tables() -> Tables:
    """Each hospital's (train, test) tables, FLamby's preprocessing and split."""
    return {name: (_table(split.train), _table(split.test)) for name, split in load_heart_sites().items()}


def make_sites(tables: Tables, *, scaling: str, chol: bool) -> list[HeartSite]:
    sites = [
        HeartSite(n, tr, te, chol_zero_as_missing=chol, scaling=scaling) for n, (tr, te) in tables.items()
    ]
    if scaling == "global":
        federated_scaling(sites)
    return sites


def pooled_site(tables: Tables, *, chol: bool) -> HeartSite:
    """All hospitals as one site, scaled with the pooled training statistics."""

    def union(part: int) -> SiteTable:
        parts = [t[part] for t in tables.values()]
        features = pd.concat([p.features for p in parts], ignore_index=True)
        return SiteTable(features=features, labels=np.concatenate([p.labels for p in parts]))

    return HeartSite("pooled", union(0), union(1), chol_zero_as_missing=chol, scaling="site")


def evaluate(model: Model, sites: Sequence[HeartSite], pooled: HeartSite | None) -> dict[str, float]:
    """Per-site test accuracy and pooled-test accuracy (``pooled`` given: FLamby's pooled scaling)."""
    acc = {s.name: s.evaluate(model_for(model, s))[M_ACCURACY] for s in sites}
    if pooled is not None:
        acc["pooled_test"] = pooled.evaluate(model)[M_ACCURACY]
    else:  # every patient scored by the model of their own site
        acc["pooled_test"] = sum(acc[s.name] * s.n_test for s in sites) / sum(s.n_test for s in sites)
    return acc


def run_seeds(
    trainer_for: Callable[[int], Trainer], train_on: Sequence[HeartSite], **eval_args
) -> list[dict]:
    """Train once per seed on ``train_on`` and evaluate on the test splits."""
    return [evaluate(trainer_for(seed)(train_on, lambda step, model: None), **eval_args) for seed in SEEDS]


def summarize(runs: list[dict], **extra: object) -> dict:
    """Mean and sd over seeds of the client-average, pooled test, per-site and worst site."""
    client = [np.mean([r[s] for s in HEART_SITES]) for r in runs]
    per_site = {s: float(np.mean([r[s] for r in runs])) for s in HEART_SITES}
    worst = min(per_site, key=per_site.get)
    return {
        "client_avg": float(np.mean(client)),
        "client_avg_sd": float(np.std(client, ddof=1)),
        "pooled_test": float(np.mean([r["pooled_test"] for r in runs])),
        "worst_site": per_site[worst],
        "worst_site_name": worst,
        "per_site": per_site,
        "client_avg_per_seed": [float(c) for c in client],
        **extra,
    }


def flamby_block(tables: Tables) -> dict[str, dict]:
    """FLamby's protocol: per-site scaling, logistic regression, FLamby's optimizers and budget."""
    sites, pooled = make_sites(tables, scaling="site", chol=False), pooled_site(tables, chol=False)
    central = {"arch": "logreg", "lr": 1e-3, "epochs": 50, "optimizer": "adam", "batch_size": 4}
    fed = {"arch": "logreg", "lr": 1e-3, "rounds": 15, "local_steps": 100, "batch_size": 4, "mu": 0.0}
    ev = {"sites": sites, "pooled": pooled}
    out = {
        "flamby_pooled": summarize(
            run_seeds(lambda s: centralized_trainer({**central, "seed": s}), [pooled], **ev)
        )
    }
    for site in sites:
        runs = run_seeds(lambda s: centralized_trainer({**central, "seed": s}), [site], **ev)
        out[f"flamby_local_{site.name}"] = summarize(runs)
    for name, mu in (("flamby_fedavg", 0.0), ("flamby_fedprox", 0.01)):
        out[name] = summarize(
            run_seeds(lambda s, mu=mu: federated_trainer({**fed, "mu": mu, "seed": s}), sites, **ev)
        )
    for name, row in out.items():
        row.update(block="flamby", params=fed if "fed" in name else central)
    return out


def cv_folds(tables: Tables, *, chol: bool) -> list[list[HeartSite]]:
    train = {name: t[0] for name, t in tables.items()}
    return [
        fold
        for rep in range(CV_REPEATS)
        for fold in make_folds(train, n_folds=CV_FOLDS, seed=rep, chol_zero_as_missing=chol)
    ]


def _cv_record(best: CVScore) -> dict:
    return {"accuracy": best.accuracy, "loss": best.loss, "step": best.step}


TRAINERS = {"central": centralized_trainer, "fed": federated_trainer, "ft": finetuned_trainer}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tune(name: str, kind: str, step_key: str, candidates: list[dict], folds: list, chosen: dict) -> CVScore:
    """Cross-validate ``candidates`` and record the best as ``chosen[name]``."""
    tic = time.perf_counter()
    best, _ = tune(candidates, TRAINERS[kind], folds)
    chosen[name] = (kind, {**best.params, step_key: best.step}, best)
    took = time.perf_counter() - tic
    _log(
        f"tuned {name}: CV acc {best.accuracy:.3f} at step {best.step} ({len(candidates)} tried, {took:.0f}s)"
    )
    return best


def _tune_arch(arch: str, shapes: list[dict], folds: list, chosen: dict) -> None:
    """Pooled training, FedAvg and FedProx for one architecture."""
    base = {"seed": TUNE_SEED, "batch_size": BATCH_SIZE, "optimizer": "sgd", "arch": arch}
    cands = [{**base, **shape, "lr": lr} for shape in shapes for lr in LRS]
    pooled = [{**c, "epochs": MAX_EPOCHS} for c in cands]
    _tune(f"kit_pooled_{arch}", "central", "epochs", pooled, folds, chosen)
    fed = [
        {**c, "rounds": MAX_ROUNDS, "local_epochs": 1, "mu": 0.0, "gamma": g} for c in cands for g in GAMMAS
    ]
    best = _tune(f"kit_fedavg_{arch}", "fed", "rounds", fed, folds, chosen)
    lrs = [lr for lr in LRS if best.params["lr"] / 3.1 < lr < best.params["lr"] * 3.1]
    prox = [{**best.params, "lr": lr, "mu": mu} for lr in lrs for mu in MUS]
    _tune(f"kit_fedprox_{arch}", "fed", "rounds", prox, folds, chosen)


def tune_kit(folds: list[list[HeartSite]]) -> dict[str, tuple[str, dict, CVScore]]:
    """Cross-validate every kit method; name -> (trainer kind, chosen params, CV score)."""
    chosen: dict[str, tuple[str, dict, CVScore]] = {}
    _tune_arch("logreg", [{}], folds, chosen)
    _tune_arch("mlp", MLP_SHAPES, folds, chosen)
    for i, name in enumerate(HEART_SITES):  # each site alone, scored on its own held-out folds
        cands = [
            {"seed": TUNE_SEED, "batch_size": BATCH_SIZE, "arch": "logreg", "lr": lr, "epochs": MAX_EPOCHS}
            for lr in LRS
        ]
        _tune(f"kit_local_{name}", "central", "epochs", cands, [[fold[i]] for fold in folds], chosen)
    base = min((k for k, v in chosen.items() if v[0] == "fed"), key=lambda k: chosen[k][2].sort_key())
    _tune_finetuning(base, folds, chosen)
    return chosen


def _tune_finetuning(base: str, folds: list, chosen: dict) -> None:
    """Each hospital chooses on its own held-out folds how to fine-tune the shared model (or not)."""
    tic = time.perf_counter()
    cands = [
        {**chosen[base][1], "ft_lr": lr, "ft_epochs": MAX_FT_EPOCHS, "ft_scope": scope}
        for scope in FT_SCOPES
        for lr in FT_LRS
    ]
    per_site = tune_per_site(cands, finetuned_trainer, folds)
    by_site = {
        name: {"ft_lr": sc.params["ft_lr"], "ft_scope": sc.params["ft_scope"], "ft_epochs": sc.step}
        for name, sc in per_site.items()
    }
    params = {**chosen[base][1], "ft_by_site": by_site}
    acc = float(np.mean([sc.accuracy for sc in per_site.values()]))
    loss = float(np.mean([sc.loss for sc in per_site.values()]))
    chosen[f"{base}_finetuned"] = ("ft", params, CVScore(params, 0, acc, loss))
    _log(f"tuned {base}_finetuned per site: {by_site} ({time.perf_counter() - tic:.0f}s)")


def run_kit_method(kind: str, params: dict, sites: list[HeartSite], name: str) -> list[dict]:
    """Final runs of one tuned method, five seeds, on the full training splits."""
    train_on = [s for s in sites if s.name == name.removeprefix("kit_local_")] if "local_" in name else sites
    return run_seeds(
        lambda seed: TRAINERS[kind]({**params, "seed": seed}), train_on, sites=sites, pooled=None
    )


def _own_site_row(runs: dict[str, list[dict]], sites: list[HeartSite]) -> dict:
    """Each hospital with its own local model: the no-collaboration personalized baseline."""
    n_test = {s.name: s.n_test for s in sites}
    own = [{s: runs[f"kit_local_{s}"][k][s] for s in HEART_SITES} for k in range(len(SEEDS))]
    for run in own:
        run["pooled_test"] = sum(run[s] * n_test[s] for s in HEART_SITES) / sum(n_test.values())
    return summarize(
        own, block="kit", note="personalized, no collaboration: kit_local_<site> on its own site"
    )


def _chol_ablation(tables: Tables, chosen: dict, names: Sequence[str]) -> dict[str, dict]:
    """The same methods and settings with a recorded cholesterol of 0 kept as the value 0."""
    sites = make_sites(tables, scaling="global", chol=False)
    out = {}
    for name in names:
        kind, params, _ = chosen[name]
        runs = run_kit_method(kind, params, sites, name)
        out[f"{name}_chol0_as_value"] = summarize(runs, block="kit_ablation", params=params)
    return out


def kit_block(tables: Tables, chosen: dict[str, tuple[str, dict, CVScore]]) -> dict[str, dict]:
    """The kit's tuned methods, the own-site local models and the cholesterol ablation."""
    sites = make_sites(tables, scaling="global", chol=True)
    out, runs = {}, {}
    for name, (kind, params, cv) in chosen.items():
        runs[name] = run_kit_method(kind, params, sites, name)
        out[name] = summarize(runs[name], block="kit", params=params, cv=_cv_record(cv))
        if kind == "ft":
            out[name]["note"] = "personalized: each hospital fine-tunes its own copy and is scored with it"
    out["kit_local_own_site_models"] = _own_site_row(runs, sites)
    best = min((k for k, v in chosen.items() if v[0] in ("fed", "ft")), key=lambda k: chosen[k][2].sort_key())
    out |= _chol_ablation(tables, chosen, (best, "kit_pooled_logreg"))
    out[best]["best_federated_by_cv"] = True
    return out


def aims(methods: dict[str, dict]) -> dict[str, dict]:
    """FLamby's figures reproduced within 0.01, and the kit's three aims for the CV-chosen method."""
    best = next(name for name, row in methods.items() if row.get("best_federated_by_cv"))
    pooled = max(row["client_avg"] for name, row in methods.items() if name.startswith("kit_pooled_"))
    row = methods[best]
    checks = {
        "flamby_pooled_within_0.01": abs(methods["flamby_pooled"]["client_avg"] - 0.735) <= 0.01,
        "flamby_fedavg_within_0.01": abs(methods["flamby_fedavg"]["client_avg"] - 0.685) <= 0.01,
        f"best_federated_client_avg_>=_{AIM_CLIENT_AVG}": row["client_avg"] >= AIM_CLIENT_AVG,
        "best_federated_>=_kit_pooled": row["client_avg"] >= pooled,
        f"best_federated_worst_site_>=_{AIM_WORST}": row["worst_site"] >= AIM_WORST,
    }
    return {"best_federated_by_cv": best, "best_kit_pooled_client_avg": pooled, "met": checks}


def site_comparison(methods: dict[str, dict], best: str) -> dict[str, dict]:
    """Per hospital: the CV-chosen federated method vs its own local-only model vs pooled training.

    Shows which hospitals gain from federation and which lose (all under the kit's scaling).
    """
    pooled = max(
        (n for n in methods if n.startswith("kit_pooled_") and "chol0" not in n),
        key=lambda n: methods[n]["client_avg"],
    )
    out = {}
    for site in HEART_SITES:
        fed = methods[best]["per_site"][site]
        local = methods[f"kit_local_{site}"]["per_site"][site]
        pool = methods[pooled]["per_site"][site]
        out[site] = {
            "federated": fed,
            "local_only": local,
            "pooled": pool,
            "gain_vs_local": fed - local,
            "gain_vs_pooled": fed - pool,
            "federated_method": best,
            "pooled_method": pooled,
        }
    return out


def print_site_comparison(comparison: dict[str, dict]) -> None:
    print("\nper hospital: federated (CV choice) vs local-only vs pooled")
    print(
        f"{'hospital':15s} {'federated':>10s} {'local':>8s} {'pooled':>8s} "
        f"{'vs local':>9s} {'vs pooled':>10s}"
    )
    for site, row in comparison.items():
        print(
            f"{site:15s} {row['federated']:10.3f} {row['local_only']:8.3f} {row['pooled']:8.3f} "
            f"{row['gain_vs_local']:+9.3f} {row['gain_vs_pooled']:+10.3f}"
        )


def _reference(name: str) -> str:
    if name in FLAMBY:
        return f"{FLAMBY[name]['client_avg']:.3f} / {FLAMBY[name]['pooled_test']:.3f}"
    site = name.removeprefix("flamby_local_")
    return f"{FLAMBY_LOCAL[site]:.3f}" if site in FLAMBY_LOCAL else ""


def print_table(methods: dict[str, dict]) -> None:
    short = {"cleveland": "cle", "hungary": "hun", "switzerland": "swi", "va_long_beach": "va"}
    head = f"{'method':44s} {'client-avg':>15s} {'pooled':>7s} {'worst site':>11s} "
    print(head + " ".join(f"{short[s]:>5s}" for s in HEART_SITES) + "  FLamby client-avg / pooled")
    for name, row in methods.items():
        cells = f"{row['client_avg']:.3f} ± {row['client_avg_sd']:.3f}"
        worst = f"{row['worst_site']:.3f} {short[row['worst_site_name']]}"
        sites = " ".join(f"{row['per_site'][s]:5.3f}" for s in HEART_SITES)
        mark = " *" if row.get("best_federated_by_cv") else ""
        pooled = row["pooled_test"]
        print(f"{name + mark:44s} {cells:>15s} {pooled:7.3f} {worst:>11s} {sites}  {_reference(name)}")
    ref = {name: FLAMBY[name]["client_avg"] for name in ("flamby_pooled", "flamby_fedavg", "best_fl")}
    print(
        f"FLamby published client-average: pooled {ref['flamby_pooled']}, FedAvg {ref['flamby_fedavg']}, "
        f"best FL {ref['best_fl']}."
    )


def print_notes(methods: dict[str, dict], verdict: dict) -> None:
    best = verdict["best_federated_by_cv"]
    for name, row in methods.items():
        if "cv" in row:
            print(
                f"  {name}: CV acc {row['cv']['accuracy']:.3f} at step {row['cv']['step']}; {row['params']}"
            )
    for name in (best, "kit_pooled_logreg"):
        delta = methods[name]["client_avg"] - methods[f"{name}_chol0_as_value"]["client_avg"]
        print(f"cholesterol 0 as missing + indicator moves {name} client-average by {delta:+.3f}")
    print(f"* best federated method by cross-validation: {best}")
    for check, met in verdict["met"].items():
        print(f"  {check}: {'met' if met else 'NOT met'}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_heart.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny models: threads cost more than they give
    start = time.perf_counter()
    tables = load_tables()
    methods = flamby_block(tables)
    block1 = time.perf_counter() - start
    chosen = tune_kit(cv_folds(tables, chol=True))
    tuned = time.perf_counter() - start
    methods |= kit_block(tables, chosen)
    seconds = time.perf_counter() - start
    verdict = aims(methods)
    comparison = site_comparison(methods, verdict["best_federated_by_cv"])
    print_table(methods)
    print_notes(methods, verdict)
    print_site_comparison(comparison)
    hardware = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
    }
    tuning = tuned - block1
    print(f"wall time {seconds:.0f} s (FLamby block {block1:.0f} s, tuning {tuning:.0f} s) on {hardware}")
    record = {
        "methods": methods,
        "aims": verdict,
        "per_site_comparison": comparison,
        "flamby_published": FLAMBY,
        "seeds": list(SEEDS),
        "cv": {"folds": CV_FOLDS, "repeats": CV_REPEATS, "seed": TUNE_SEED},
        "hardware": hardware,
        "seconds": {"total": seconds, "flamby_block": block1, "tuning": tuning},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
