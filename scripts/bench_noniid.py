"""Non-IID hospitals benchmark: FedAvg, FedProx, SCAFFOLD, FedOpt (Adam, Yogi), Ditto, fine-tuning
and clustered FL on the real Fed-Heart-Disease hospitals, five seeds each.

Run as ``python scripts/bench_noniid.py --out results/bench_noniid.json`` (``make bench-noniid``).
``--dataset pneumonia`` (``make bench-noniid-cxr``) runs the PneumoniaMNIST rows instead (Dirichlet
alpha 0.1 and 1.0, see ``scripts/bench_noniid_cxr.py``) and merges them into the same JSON under
``pneumoniamnist_alpha<alpha>``; either run keeps the other's entries.

Same protocol as ``scripts/bench_heart.py`` (whose loaders, folds and summaries this reuses):
federated global scaling, cholesterol 0 read as missing, logistic regression, SGD with batch 16 (the
sites' default floor) and one local epoch a round. Every hyper-parameter (learning rates, rounds,
FedProx's mu, server optimizer settings, Ditto's lambda, the split of clustered FL, fine-tuning per
hospital) is chosen by federated cross-validation inside the training splits (3 folds x 2 repeats,
held-out log-loss); the test splits are read only for the final figures. "best_by_site_cv" lets each
hospital pick the method whose cross-validated held-out loss on its own folds is lowest, again
without the test data."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from bench_heart import (
    BATCH_SIZE,
    LRS,
    MAX_ROUNDS,
    MUS,
    SEEDS,
    _tune_finetuning,
    cv_folds,
    load_tables,
    make_sites,
    run_seeds,
    summarize,
)

from fedhealth.constants import HEART_SITES
from fedhealth.reports.personalization import best_by_site, format_personal, personal_vs_global
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.training.noniid_federation import run_noniid
from fedhealth_tools.training.noniid_trainers import ALGORITHM_OPTIONS, noniid_trainer
from fedhealth_tools.training.trainers import _local_config, build_model, federated_trainer, finetuned_trainer
from fedhealth_tools.training.tuning import CVScore, cv_site_curves, grid, tune

# Anchors: FLamby (du Terrail et al. 2022) Fed-Heart-Disease client-average accuracy.
ANCHORS = {"flamby_best_fl_fedyogi": 0.731, "flamby_pooled": 0.735, "flamby_fedavg_worst_site": 0.640}
AIM_CLIENT_AVG, AIM_WORST = 0.84, 0.80
SERVER_LRS = (0.03, 0.1, 0.3, 1.0)
TAUS = (1e-3, 1e-2)
DITTO = grid(lam=[0.01, 0.1, 1.0], ditto_lr=[0.01, 0.03, 0.1])
CLUSTER = grid(split_round=[3, 10], split_threshold=[0.0, 0.5])
# Public facts about the four hospitals (country), the kind of non-PHI metadata a site declares.
REGION = {"cleveland": "us", "va_long_beach": "us", "hungary": "europe", "switzerland": "europe"}
BASE = {"seed": 0, "batch_size": BATCH_SIZE, "optimizer": "sgd", "arch": "logreg", "local_epochs": 1}
TRAINERS = {"fed": federated_trainer, "ft": finetuned_trainer, "noniid": noniid_trainer}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tune(name: str, kind: str, candidates: list[dict], folds: list, chosen: dict) -> CVScore:
    tic = time.perf_counter()
    best, _ = tune(candidates, TRAINERS[kind], folds)
    chosen[name] = (kind, {**best.params, "rounds": best.step}, best)
    _log(
        f"tuned {name}: CV acc {best.accuracy:.3f} loss {best.loss:.4f} at round {best.step} "
        f"({len(candidates)} tried, {time.perf_counter() - tic:.0f}s)"
    )
    return best


def tune_methods(folds: list[list[HeartSite]]) -> dict[str, tuple[str, dict, CVScore]]:
    """Cross-validate every method; name -> (trainer kind, chosen params, CV score)."""
    chosen: dict[str, tuple[str, dict, CVScore]] = {}
    fed = [{**BASE, "lr": lr, "rounds": MAX_ROUNDS, "mu": 0.0, "gamma": g} for lr in LRS for g in (1.0, 0.95)]
    avg = _tune("fedavg", "fed", fed, folds, chosen).params
    lrs = [lr for lr in LRS if avg["lr"] / 3.1 < lr < avg["lr"] * 3.1]
    _tune("fedprox", "fed", [{**avg, "lr": lr, "mu": mu} for lr in lrs for mu in MUS], folds, chosen)
    scaf = [
        {**BASE, "algorithm": "scaffold", "lr": lr, "rounds": MAX_ROUNDS, "gamma": g}
        for lr in LRS
        for g in (1.0, 0.95)
    ]
    _tune("scaffold", "noniid", scaf, folds, chosen)
    for opt in ("adam", "yogi"):
        cands = [
            {**avg, "algorithm": "fedopt", "server_opt": opt, "server_lr": s, "tau": t, "rounds": MAX_ROUNDS}
            for s in SERVER_LRS
            for t in TAUS
        ]
        _tune(f"fed{opt}", "noniid", cands, folds, chosen)
    ditto = [{**avg, "algorithm": "ditto", "rounds": MAX_ROUNDS, **d} for d in DITTO]
    _tune("ditto", "noniid", ditto, folds, chosen)
    cluster = [{**avg, "algorithm": "clustered", "rounds": MAX_ROUNDS, **c} for c in CLUSTER]
    _tune("clustered_updates", "noniid", cluster, folds, chosen)
    groups = [sorted(s for s in HEART_SITES if REGION[s] == r) for r in ("europe", "us")]
    meta = [
        {**avg, "algorithm": "clustered", "rounds": MAX_ROUNDS, "fixed_clusters": groups, "split_round": k}
        for k in (0, 5, 10)
    ]
    _tune("clustered_metadata", "noniid", meta, folds, chosen)
    base = "fedprox" if chosen["fedprox"][2].sort_key() < chosen["fedavg"][2].sort_key() else "fedavg"
    _tune_finetuning(base, folds, chosen)
    chosen["finetuned"] = chosen.pop(f"{base}_finetuned")
    return chosen


def per_site_cv(chosen: dict, folds: list) -> dict[str, dict[str, float]]:
    """Each method's held-out log-loss per site at its chosen round (for each hospital's own pick)."""
    out: dict[str, dict[str, float]] = {}
    for name, (kind, params, _) in chosen.items():
        step = 0 if kind == "ft" else int(params["rounds"])
        curves = cv_site_curves(TRAINERS[kind](params), folds)
        step = max(curves) if kind == "ft" else step
        out[name] = {site: loss for site, (_, loss) in curves[step].items()}
    return out


def final_runs(chosen: dict, sites: list[HeartSite]) -> dict[str, list[dict]]:
    runs = {}
    for name, (kind, params, _) in chosen.items():
        runs[name] = run_seeds(
            lambda s, k=kind, p=params: TRAINERS[k]({**p, "seed": s}), sites, sites=sites, pooled=None
        )
    kind, params, _ = chosen["ditto"]
    runs["ditto_global"] = run_seeds(
        lambda s: noniid_trainer({**params, "seed": s, "serve": "global"}), sites, sites=sites, pooled=None
    )
    plain = {k: v for k, v in chosen["scaffold"][1].items() if k != "algorithm"}
    runs["fedavg_at_scaffold_settings"] = run_seeds(
        lambda s: federated_trainer({**plain, "mu": 0.0, "seed": s}), sites, sites=sites, pooled=None
    )
    return runs


def clusters_found(params: dict, sites: list[HeartSite]) -> dict[str, list]:
    """Clustered FL's clusters per seed: the round of the first split and the final clusters."""
    found: dict[str, list] = {"first_split_round": [], "final_clusters": []}
    for seed in SEEDS:
        result = run_noniid(
            sites,
            lambda: build_model(params, sites[0].n_features),
            algorithm="clustered",
            rounds=int(params["rounds"]),
            lr=float(params["lr"]),
            gamma=float(params.get("gamma", 1.0)),
            seed=seed,
            options={k: params[k] for k in ALGORITHM_OPTIONS if k in params},
            **_local_config(params),
        )
        split = next((r for r, c in enumerate(result.clusters) if len(c) > 1), None)
        found["first_split_round"].append(split)
        found["final_clusters"].append(result.clusters[-1])
    return found


def combine_by_site(runs: dict[str, list[dict]], picks: dict[str, str], sites: list[HeartSite]) -> list[dict]:
    """Each hospital served by the method it picked (per seed)."""
    n = {s.name: s.n_test for s in sites}
    out = []
    for k in range(len(SEEDS)):
        row = {site: runs[picks[site]][k][site] for site in HEART_SITES}
        row["pooled_test"] = sum(row[s] * n[s] for s in HEART_SITES) / sum(n.values())
        out.append(row)
    return out


def print_table(methods: dict[str, dict]) -> None:
    short = {"cleveland": "cle", "hungary": "hun", "switzerland": "swi", "va_long_beach": "va"}
    print(
        f"{'method':22s} {'client-avg':>15s} {'worst site':>11s} "
        + " ".join(f"{short[s]:>5s}" for s in HEART_SITES)
    )
    for name, row in methods.items():
        cells = f"{row['client_avg']:.3f} ± {row['client_avg_sd']:.3f}"
        worst = f"{row['worst_site']:.3f} {short[row['worst_site_name']]}"
        print(
            f"{name:22s} {cells:>15s} {worst:>11s} "
            + " ".join(f"{row['per_site'][s]:5.3f}" for s in HEART_SITES)
        )


def _hardware() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count()}


def _merge(out: Path, datasets: dict, **top: object) -> dict:
    """Write ``datasets`` into ``out``, keeping every other dataset entry already there."""
    record = json.loads(out.read_text()) if out.is_file() else {}
    kept = {
        k: v for k, v in record.get("datasets", {}).items() if k not in datasets and k != "pneumoniamnist"
    }
    record.update(top)
    record["datasets"] = {**kept, **datasets}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    return record


def main_pneumonia(args: argparse.Namespace) -> None:
    """The PneumoniaMNIST rows: every alpha, merged into ``args.out``."""
    from bench_noniid_cxr import run_pneumonia

    start, cpu_start = time.perf_counter(), time.process_time()
    datasets = {}
    for alpha in args.alphas:
        tic = time.perf_counter()
        entry = run_pneumonia(alpha, rounds=args.rounds, seeds=args.seeds, log=_log)
        entry["seconds"] = time.perf_counter() - tic
        entry["hardware"] = {**_hardware(), "torch_threads": 1, "load_average_at_end": os.getloadavg()}
        datasets[f"pneumoniamnist_alpha{alpha}"] = entry
    for key, entry in datasets.items():
        print(f"\n{key} (test AUC; client average over sites with both classes in their test split)")
        print(f"{'method':18s} {'client-avg':>15s} {'acc':>6s} {'worst':>13s}  per-site AUC / acc")
        for name, row in entry["methods"].items():
            sd = f" ± {row['client_avg_sd']:.3f}" if row["client_avg_sd"] is not None else ""
            per = " ".join(
                f"{v['auc'] if v['auc'] is not None else float('nan'):.3f}/{v['accuracy']:.3f}"
                for v in row["per_site"].values()
            )
            print(
                f"{name:18s} {row['client_avg']:.3f}{sd:>8s} {row['client_avg_accuracy']:6.3f} "
                f"{row['worst_site']:.3f} {row['worst_site_name']:6s}  {per}"
            )
    _merge(args.out, datasets)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"wrote {args.out}; wall time {seconds:.0f} s, CPU time {cpu:.0f} s")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_noniid.json"))
    parser.add_argument("--dataset", choices=("heart", "pneumonia"), default="heart")
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 1.0], help="pneumonia only")
    parser.add_argument("--rounds", type=int, default=30, help="pneumonia only: federated rounds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="pneumonia only: training seeds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.dataset == "pneumonia":
        main_pneumonia(args)
        return
    start, cpu_start = time.perf_counter(), time.process_time()
    tables = load_tables()
    folds = cv_folds(tables, chol=True)
    chosen = tune_methods(folds)
    site_losses = per_site_cv(chosen, folds)
    picks = {site: min(site_losses, key=lambda m: site_losses[m][site]) for site in HEART_SITES}
    _log(f"each hospital's pick by its own CV loss: {picks}")
    tuned = time.perf_counter() - start
    sites = make_sites(tables, scaling="global", chol=True)
    runs = final_runs(chosen, sites)
    methods = {
        name: summarize(
            runs[name],
            params=params,
            cv={"accuracy": cv.accuracy, "loss": cv.loss, "round": cv.step},
            kind=kind,
        )
        for name, (kind, params, cv) in chosen.items()
    }
    methods["ditto_global"] = summarize(
        runs["ditto_global"], note="Ditto's global model (what Ditto personalizes from)"
    )
    methods["clustered_updates"]["clusters_by_seed"] = clusters_found(chosen["clustered_updates"][1], sites)
    methods["fedavg_at_scaffold_settings"] = summarize(
        runs["fedavg_at_scaffold_settings"],
        note="ablation: FedAvg with SCAFFOLD's chosen lr, decay and rounds, without control variates",
    )
    methods["best_by_site_cv"] = summarize(
        combine_by_site(runs, picks, sites),
        picks=picks,
        note="each hospital uses the method with its lowest CV held-out loss",
    )
    personal = {
        "ditto": personal_vs_global(
            methods["ditto"]["per_site"], methods["ditto_global"]["per_site"], method="ditto"
        ),
        "finetuned": personal_vs_global(
            methods["finetuned"]["per_site"],
            methods["fedprox" if chosen["finetuned"][1]["mu"] > 0 else "fedavg"]["per_site"],
            method="finetuned",
        ),
    }
    fl = {k: v for k, v in methods.items() if k != "best_by_site_cv"}
    best_on_test = best_by_site({m: row["per_site"] for m, row in fl.items()})
    by_cv = min(chosen, key=lambda m: chosen[m][2].sort_key())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print_table(methods)
    for name, rows in personal.items():
        print(f"\npersonal vs global, {name}\n{format_personal(rows)}")
    print("\nper hospital, best method on the test split (reporting only, not a selection):")
    for site, row in best_on_test.items():
        print(f"  {site:15s} {row['method']:20s} {row['value']:.3f} (+{row['margin']:.3f} over the next)")
    top = max(methods, key=lambda m: methods[m]["client_avg"])
    verdict = {
        "best_client_avg_method": top,
        f"client_avg_>=_{AIM_CLIENT_AVG}": methods[top]["client_avg"] >= AIM_CLIENT_AVG,
        f"worst_site_>=_{AIM_WORST}": methods[top]["worst_site"] >= AIM_WORST,
        "best_by_cv_loss": by_cv,
    }
    print(f"\naims: {verdict}; wall time {seconds:.0f} s (tuning {tuned:.0f} s), CPU time {cpu:.0f} s")
    hardware = _hardware()
    record = {
        "datasets": {
            "heart": {
                "methods": methods,
                "personal_vs_global": personal,
                "best_method_by_site_on_test": best_on_test,
                "picks_by_site_cv": picks,
                "site_cv_loss": site_losses,
                "aims": verdict,
            },
        },
        "anchors": ANCHORS,
        "seeds": list(SEEDS),
        "cv": {"folds": 3, "repeats": 2, "criterion": "held-out log-loss, client average"},
        "hardware": hardware,
        "seconds": {"total": seconds, "tuning": tuned, "cpu": cpu, "load_average_at_end": os.getloadavg()},
    }
    _merge(args.out, record.pop("datasets"), **record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
