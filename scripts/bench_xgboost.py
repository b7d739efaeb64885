"""XGBoost on the tabular tasks: centralized, local-only, federated histogram, FLARE's bagging; 5 seeds.

Run as ``python scripts/bench_xgboost.py --out results/bench_xgboost.json`` (``make bench-xgboost``).

Two tasks, each as tabular sites harmonized from the hospitals' own exports and aligned by the
server from small-cell-suppressed profiles (:func:`fedhealth_tools.federation.ehr.align_sites`) with
the tree jobs' policy (imputation ``none``, no indicators: a missing value stays NaN and XGBoost
learns a default direction at every split):

- ``heart``: all 920 UCI patients at the 4 hospitals, the test patients of ``make bench-ehr``
  (FLamby's test split plus the held-out share of the patients FLamby dropped); the policy of
  ``job_specs/xgboost.json`` (the ``heart_xgboost`` job).
- ``indo_rct``: the trial's centres as the ``indo_rct_fedavg`` job places them; the job's alignment
  policy with imputation ``none`` and no indicators. Centres below a site's default
  ``min_examples_per_round`` decline in that job and are left out here too (named in the JSON).

Methods (:mod:`fedhealth_tools.training.tree_methods`), each scored per site on its test split:
``centralized_xgboost`` (pooled training rows), ``local_only`` (each site its own model, its own
hyper-parameters), ``federated_histogram`` (XGBoost's row-split histogram training across the sites)
and ``bagging`` (FLARE's tree-based bagging, :mod:`fedhealth.trees.bagging`), next to the best
federated neural model (``best_neural_federated``): read from ``results/bench_ehr.json`` for heart,
trained here with that benchmark's protocol for indo_rct, which it does not cover.

Hyper-parameters come from federated cross-validation inside the training splits (per-site
stratified folds, the alignment recomputed from the training folds); a candidate's score is the
client average of the per-site AUCs of the out-of-fold predictions (each training row predicted once
by a model that did not see it), log-loss breaking ties. The test splits are read only for the
final figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import xgboost as xgb
from bench_ehr import CANDIDATES as NEURAL_GRID
from bench_ehr import CHECKPOINTS as NEURAL_ROUNDS
from bench_ehr import CV_FOLDS, CV_REPEATS, SEEDS, Data, Setup, log_loss, predictions, train

from fedhealth.ehr.alignment import AlignmentPolicy
from fedhealth.ehr.harmonize import Harmonized
from fedhealth.ehr.mapping import SiteMapping
from fedhealth.policy.site_limits import Limits
from fedhealth.tasks.tabular import TabularSite, TabularTask
from fedhealth.training.metrics import clean_metrics
from fedhealth.trees.matrices import site_matrices
from fedhealth_tools.data.heart_canonical import heart_dictionary
from fedhealth_tools.data.indo_rct import (
    SITE_OF,
    as_export,
    indo_rct_dictionary,
    indo_rct_mapping,
    load_indo_rct,
    split_centre,
)
from fedhealth_tools.federation.ehr import PrealignedTabularTask, align_sites, job_alignment_policy, take
from fedhealth_tools.jobs.spec import SPECS_DIR
from fedhealth_tools.training import tree_methods
from fedhealth_tools.training.ehr_scoring import subset_auc, summarize
from fedhealth_tools.training.tree_methods import SiteMatrices
from fedhealth_tools.training.tuning import grid, stratified_fold_ids

FIXED = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "subsample": 0.8,
    "nthread": 1,
    "verbosity": 0,
}
# Widened once after a first full run chose ends of the grid (PROTOCOL["grid_history"] says which).
TREE_GRID = grid(max_depth=[1, 2, 3, 4], eta=[0.03, 0.1, 0.3], min_child_weight=[1.0, 5.0])
TREE_ROUNDS = (5, 10, 20, 30, 50, 75, 100, 150, 200)
BAGGING_GRID = grid(eta=[0.03, 0.1, 0.3, 1.0])  # the global eta; each site boosts with eta / num_sites
BAGGING_ROUNDS = (5, 10, 20, 30, 50, 100)
AIM_RATIO = 0.995
NEAR_CHANCE = 0.6  # a client-average test AUC below this: the aims' comparisons are between noisy models
TREE_METHODS = ("centralized_xgboost", "local_only", "federated_histogram", "bagging")
NEURAL = "best_neural_federated"
MIN_TRAIN = Limits().min_examples_per_round  # a site's default floor: smaller centres decline
PROTOCOL = {
    "cross_validation": (
        f"{CV_FOLDS}-fold x {CV_REPEATS} repeats inside each site's training split, stratified; per site the "
        "AUC of its out-of-fold predictions, then the mean over sites (client average); the highest wins, "
        "lower mean log-loss then fewer rounds break ties. federated_histogram's choice is applied unchanged "
        "to centralized_xgboost; local_only chooses per site from that site's folds alone; bagging chooses "
        "eta and rounds with the histogram's max_depth and min_child_weight"
    ),
    "bagging": (
        "FLARE tree-based bagging, uniform lr mode: each round every site boosts 1 tree from the global "
        "model with eta / num_sites and the server appends them; base_score fixed to the training rows' "
        "prevalence (XGBoost would estimate one per site); sum_hessian masked"
    ),
    "subsample": (
        "0.8 in every tree method, so the seeds differ; without it federated_histogram builds the same "
        "trees as centralized_xgboost (tests/unit/training/test_tree_methods.py)"
    ),
    "grid_history": (
        "a first full run (max_depth 2-4, rounds 10-200, bagging eta 0.1-1.0 and rounds 5-50) chose ends "
        "of the grid: max_depth 2 on heart; 10 rounds and bagging eta 0.1 with 50 rounds on indo_rct. The "
        "grids were widened (max_depth 1, 5 rounds, bagging eta 0.03 and 100 rounds) for this run, after its "
        "test figures had been seen (client-average AUC, heart / indo_rct: centralized 0.874 / 0.390, "
        "federated_histogram 0.876 / 0.399, bagging 0.851 / 0.467, local_only 0.706 / 0.468)"
    ),
    "test_splits": "read only for the final figures; all methods score the same test patients",
    "timings": "other jobs may share the machine's 2 cores: the seconds are not claims",
}
Rows = dict[str, tuple[np.ndarray, str, np.ndarray]]
# sites (their evaluation rows: a held-out fold or the test split), params, seed -> (checkpoints, stats)
Fit = Callable[[list[TabularSite], dict, int], tuple[dict[int, dict[str, np.ndarray]], dict]]


@dataclasses.dataclass
class Task:
    """A task's harmonized tables per site, its dictionary and the alignment policies of its jobs."""

    name: str
    tables: dict[str, dict[str, Harmonized]]
    dictionary: dict
    tree_policy: AlignmentPolicy
    neural_policy: AlignmentPolicy
    excluded: dict[str, str] = dataclasses.field(default_factory=dict)
    centres: dict[str, str] = dataclasses.field(default_factory=dict)  # site -> the data it holds

    @property
    def sites(self) -> list[str]:
        return list(self.tables)

    def full_rows(self) -> Rows:
        return {
            s: (np.arange(len(t["train"])), "test", np.arange(len(t["test"]))) for s, t in self.tables.items()
        }


def _spec_policy(name: str) -> AlignmentPolicy:
    return job_alignment_policy(json.loads((SPECS_DIR / name).read_text()), label=name)


def heart_task() -> Task:
    data = Data()  # bench_ehr's hospitals: canonical rows, dialect exports, checked against FLamby
    return Task(
        "heart", data.harmonized, heart_dictionary(), _spec_policy("xgboost.json"), _spec_policy("heart.json")
    )


def indo_rct_task() -> Task:
    table, job = load_indo_rct(), TabularTask(dictionary=indo_rct_dictionary(), dataset="indo_rct")
    mapping = SiteMapping.from_dict(indo_rct_mapping())
    tables, excluded = {}, {}
    for site, centre in SITE_OF.items():
        parts = split_centre(table[table["site"] == centre])
        if len(parts["train"]) < MIN_TRAIN:
            excluded[site] = (
                f"centre {centre}: {len(parts['train'])} training patients "
                f"({int((parts['train']['outcome'] == '1_yes').sum())} with the outcome), "
                f"{len(parts['test'])} test; below a site's default min_examples_per_round ({MIN_TRAIN}), "
                "so it declines in the indo_rct_fedavg job"
            )
            continue
        s = job.site_from_frames(site, as_export(parts["train"]), as_export(parts["test"]), mapping)
        tables[site] = {"train": s.train_table, "test": s.test_table}
    neural = _spec_policy("indo_rct.json")
    tree = dataclasses.replace(neural, imputation="none", indicators=False)
    centres = {s: SITE_OF[s] for s in tables}
    return Task("indo_rct", tables, indo_rct_dictionary(), tree, neural, excluded, centres)


def build_sites(task: Task, rows: Rows, policy: AlignmentPolicy) -> list[TabularSite]:
    job = TabularTask(dictionary=task.dictionary)
    sites = [
        TabularSite(s, take(task.tables[s]["train"], tr), take(task.tables[s][part], ev), job.data_dictionary)
        for s, (tr, part, ev) in rows.items()
    ]
    align_sites(sites, policy)
    return sites


def matrices(sites: Sequence[TabularSite]) -> list[SiteMatrices]:
    out = []
    for site in sites:
        train_xy, test_xy, names = site_matrices(site)
        out.append(SiteMatrices(site.name, train_xy, test_xy, names))
    return out


def tree_fit(method: str, rounds: Sequence[int], base: Mapping | None = None) -> Fit:
    """A tree method as a :data:`Fit`; ``base`` adds to the candidate (bagging: the histogram's depth)."""
    run = getattr(tree_methods, method.removesuffix("_xgboost"))

    def fit(sites, params, seed):
        m = matrices(sites)
        full = {**FIXED, **(base or {}), **params, "seed": seed}
        if method == "bagging":  # one base margin for every site: the training rows' prevalence
            full["base_score"] = float(np.concatenate([s.train[1] for s in m]).mean())
        return run(m, full, rounds)

    return fit


def neural_fit(task: Task) -> Fit:
    """bench_ehr's federated logistic regression (FedAvg) on the task's sites, predictions per checkpoint."""

    def fit(sites, params, seed):
        setup, held = Setup(PrealignedTabularTask(dictionary=task.dictionary), sites, sites), {}

        def keep(r, result):
            if r + 1 in NEURAL_ROUNDS:
                held[r + 1] = predictions(result.model, setup)

        started = time.perf_counter()
        train(setup, params, rounds=max(NEURAL_ROUNDS), seed=seed, on_round=keep)
        return held, {"seconds": time.perf_counter() - started}

    return fit


def cross_validate(task: Task, policy: AlignmentPolicy, fit: Fit, candidates: list[dict]) -> dict:
    """``{(candidate, rounds): {site: [(auc, log-loss) per repeat]}}`` of the out-of-fold predictions."""
    scores: dict = {}
    for repeat in range(CV_REPEATS):
        ids = {
            s: stratified_fold_ids(t["train"].labels, n_folds=CV_FOLDS, seed=repeat * 1000 + i)
            for i, (s, t) in enumerate(task.tables.items())
        }
        folds = [
            build_sites(
                task,
                {s: (np.flatnonzero(f != k), "train", np.flatnonzero(f == k)) for s, f in ids.items()},
                policy,
            )
            for k in range(CV_FOLDS)
        ]
        labels = {
            s: np.concatenate([f[i].arrays("test")[1] for f in folds]) for i, s in enumerate(task.sites)
        }
        for c, params in enumerate(candidates):
            held: dict = {}
            for sites in folds:
                for r, probs in fit(sites, params, repeat)[0].items():
                    for s, p in probs.items():
                        held.setdefault(r, {}).setdefault(s, []).append(p)
            for r, per_site in held.items():
                for s, parts in per_site.items():
                    p = np.concatenate(parts)
                    score = (subset_auc(labels[s], p, np.ones(len(p), bool)), log_loss(labels[s], p))
                    scores.setdefault((c, r), {}).setdefault(s, []).append(score)
    return scores


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def choose(scores: dict, candidates: list[dict], sites: Sequence[str], *, rule: str) -> dict:
    """The best candidate and rounds over ``sites``: client-average AUC (``rule="auc"``) or log-loss."""

    def summary(per_site):
        auc = _mean([_mean([a for a, _ in per_site[s]]) for s in sites])
        loss = float(np.mean([np.mean([v for _, v in per_site[s]]) for s in sites]))
        return auc, loss

    def key(item):
        (c, r), per_site = item
        auc, loss = summary(per_site)
        return ((-(auc or 0.0), loss) if rule == "auc" else (loss,)) + (r, c)

    (c, r), best = min(scores.items(), key=key)
    auc, loss = summary(best)
    chosen = {**candidates[c], "rounds": r}
    grid_values = {k: sorted({x[k] for x in candidates}) for k in candidates[0]}
    grid_values["rounds"] = sorted({rounds for _, rounds in scores})
    edges = [  # a choice at the end of a grid of 3 or more values: the best may lie beyond it
        f"{k} {chosen[k]:g} ({'lowest' if chosen[k] == v[0] else 'highest'} of {len(v)})"
        for k, v in grid_values.items()
        if len(v) > 2 and chosen[k] in (v[0], v[-1])
    ]
    return {**chosen, "cv_client_avg_auc": auc, "cv_client_avg_log_loss": loss, "cv_at_grid_edge": edges}


def score(fit: Fit, sites: list[TabularSite], params: dict, seed: int) -> tuple[dict, dict]:
    """Per-site test AUCs of one seed's model trained with ``params`` (its ``rounds``), and its stats."""
    settings = {k: v for k, v in params.items() if k != "rounds" and not k.startswith("cv_")}
    probs, stats = fit(sites, settings, seed)
    probs = probs[params["rounds"]]
    aucs = {}
    for site in sites:
        y = site.arrays("test")[1]
        aucs[site.name] = subset_auc(y, probs[site.name], np.ones(len(y), bool))
    return aucs, stats


def summarize_seeds(runs: list[dict], sites: Sequence[str]) -> dict:
    out = summarize(runs, sites)
    out["per_site_auc_sd"] = {
        s: float(np.std([r[s] for r in runs if r[s] is not None], ddof=1)) if len(runs) > 1 else 0.0
        for s in sites
    }
    return out


def timing(stats: list[dict]) -> dict:
    """Seconds per run and per federated round (mean over seeds), with the messages' bytes if counted."""
    out: dict = {"seconds_per_run": float(np.mean([s["seconds"] for s in stats]))}
    if "round_seconds" in stats[0]:
        per_round = np.concatenate([s["round_seconds"] for s in stats])
        out |= {
            "round_seconds_mean": float(per_round.mean()),
            "round_seconds_median": float(np.median(per_round)),
        }
    for key in ("bytes_per_site_per_round", "upload_bytes_per_site_per_round",
                "download_bytes_per_site_per_round", "model_bytes"):  # fmt: skip
        if key in stats[0]:
            out[key] = stats[0][key]
    return out


def run_method(task: Task, method: str, chosen: dict, log) -> dict:
    started = time.perf_counter()
    sites = build_sites(task, task.full_rows(), task.tree_policy)
    runs, stats = [], []
    for seed in SEEDS:
        if method == "local_only":  # every site its own model with its own hyper-parameters
            aucs: dict = {}
            for site in sites:
                fit = tree_fit(method, [chosen[site.name]["rounds"]])
                aucs |= score(fit, [site], chosen[site.name], seed)[0]
            runs.append(aucs)
            continue
        rounds = [chosen["rounds"]]
        fit = tree_fit(method, rounds, base=chosen.get("tree_params"))
        aucs, st = score(fit, sites, {k: v for k, v in chosen.items() if k != "tree_params"}, seed)
        runs.append(aucs)
        stats.append(st)
    out = {**summarize_seeds(runs, task.sites), "hyperparameters": chosen}
    if stats:
        out["timing"] = timing(stats)
    out["seconds_evaluation"] = round(time.perf_counter() - started, 1)
    log(f"{task.name}/{method}: client-avg AUC {out['client_avg_auc']:.3f}")
    return out


def tune_trees(task: Task, log) -> dict[str, dict]:
    """Hyper-parameters per method: histogram (applied to centralized), per site (local), bagging."""
    hist = cross_validate(task, task.tree_policy, tree_fit("federated_histogram", TREE_ROUNDS), TREE_GRID)
    chosen = {"federated_histogram": choose(hist, TREE_GRID, task.sites, rule="auc")}
    chosen["centralized_xgboost"] = dict(chosen["federated_histogram"])
    log(f"{task.name}: histogram CV chose {chosen['federated_histogram']}")
    local = cross_validate(task, task.tree_policy, tree_fit("local_only", TREE_ROUNDS), TREE_GRID)
    chosen["local_only"] = {s: choose(local, TREE_GRID, [s], rule="auc") for s in task.sites}
    tree_params = {k: chosen["federated_histogram"][k] for k in ("max_depth", "min_child_weight")}
    bag = cross_validate(
        task, task.tree_policy, tree_fit("bagging", BAGGING_ROUNDS, tree_params), BAGGING_GRID
    )
    chosen["bagging"] = {**choose(bag, BAGGING_GRID, task.sites, rule="auc"), "tree_params": tree_params}
    log(f"{task.name}: bagging CV chose {chosen['bagging']}")
    return chosen


def neural_from_ehr_bench(path: Path) -> dict:
    """The best federated neural method of ``make bench-ehr`` among those that score every test patient."""
    methods = json.loads(path.read_text())["methods"]
    full = {
        k: m
        for k, m in methods.items()
        if k.endswith("_federated") and not any(m["patients_not_scored"].values())
    }
    name = max(full, key=lambda k: full[k]["client_avg_auc"])
    keep = (
        "client_avg_auc",
        "client_avg_auc_sd",
        "per_site_auc",
        "client_avg_auc_per_seed",
        "hyperparameters",
    )
    return {**{k: full[name][k] for k in keep}, "method": name, "source": str(path)}


def neural_trained_here(task: Task, log) -> dict:
    started = time.perf_counter()
    fit = neural_fit(task)
    scores = cross_validate(task, task.neural_policy, fit, NEURAL_GRID)
    chosen = choose(scores, NEURAL_GRID, task.sites, rule="log_loss")
    sites = build_sites(task, task.full_rows(), task.neural_policy)
    runs = [score(fit, sites, chosen, seed)[0] for seed in SEEDS]
    log(f"{task.name}/{NEURAL}: CV chose {chosen}")
    return {
        **summarize_seeds(runs, task.sites),
        "hyperparameters": chosen,
        "method": "missingness_aware_federated",
        "source": (
            "trained here with make bench-ehr's protocol (logistic regression, FedAvg, its lr / weight "
            "decay / rounds grid, lowest client-average out-of-fold log-loss): results/bench_ehr.json has "
            "no indo_rct"
        ),
        "alignment_policy": dataclasses.asdict(task.neural_policy),
        "seconds": round(time.perf_counter() - started, 1),
    }


def aims(tasks: dict) -> dict:
    """Per task: is federated_histogram within the aim's ratio of centralized, and trees against neural."""
    out: dict = {}
    for name, t in tasks.items():
        m = t["methods"]
        auc = {k: v["client_avg_auc"] for k, v in m.items()}
        best_tree = max(("federated_histogram", "bagging"), key=auc.get)
        gap = auc[best_tree] - auc[NEURAL]
        out[name] = {
            "histogram_within_centralized": {
                "aim": f"federated_histogram client_avg_auc >= {AIM_RATIO} x centralized_xgboost",
                "federated_histogram": auc["federated_histogram"],
                "centralized_xgboost": auc["centralized_xgboost"],
                "ratio": auc["federated_histogram"] / auc["centralized_xgboost"],
                "verdict": "met"
                if auc["federated_histogram"] >= AIM_RATIO * auc["centralized_xgboost"]
                else "not met",
            },
            "trees_vs_best_neural": {
                "neural_method": m[NEURAL]["method"],
                "difference_by_method": {k: auc[k] - auc[NEURAL] for k in TREE_METHODS},
                "best_federated_trees": best_tree,
                "statement": (
                    f"{best_tree} is {'above' if gap > 0 else 'below'} {m[NEURAL]['method']} "
                    f"by {abs(gap):.3f} client-average AUC"
                ),
            },
        }
        if auc["centralized_xgboost"] < NEAR_CHANCE:
            cv_auc = m["federated_histogram"]["hyperparameters"]["cv_client_avg_auc"]
            out[name]["caveat"] = (
                f"centralized_xgboost scores {auc['centralized_xgboost']:.3f} on the test split "
                f"(cross-validated {cv_auc:.3f} in the training split): the models are near or below chance "
                "there, so the ratio and the trees-against-neural differences compare noise more than methods"
            )
    both = all(a["histogram_within_centralized"]["verdict"] == "met" for a in out.values())
    return {"histogram_within_centralized_on_both_tasks": "met" if both else "not met", "per_task": out}


def schema_summary(task: Task) -> dict:
    sites = build_sites(task, task.full_rows(), task.tree_policy)
    schema = sites[0].schema or {}
    train = {s.name: len(s.train_table) for s in sites}
    test = {s.name: len(s.test_table) for s in sites}
    return {
        "columns": schema["columns"],
        "dropped": schema["dropped"],
        "train_patients": train,
        "test_patients": test,
    }


def run_task(task: Task, ehr_bench: Path, log) -> dict:
    started = time.perf_counter()
    chosen = tune_trees(task, log)
    cv_seconds = round(time.perf_counter() - started, 1)
    methods = {method: run_method(task, method, chosen[method], log) for method in TREE_METHODS}
    methods[NEURAL] = (
        neural_from_ehr_bench(ehr_bench) if task.name == "heart" else neural_trained_here(task, log)
    )
    return {
        "methods": methods,
        "sites": task.sites,
        "centres": task.centres,
        "excluded_sites": task.excluded,
        "alignment_policy": dataclasses.asdict(task.tree_policy),
        "schema": schema_summary(task),
        "seconds": {"tree_cross_validation": cv_seconds, "total": round(time.perf_counter() - started, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_xgboost.json"))
    parser.add_argument("--ehr-bench", type=Path, default=Path("results/bench_ehr.json"))
    parser.add_argument("--tasks", nargs="+", default=["heart", "indo_rct"], choices=["heart", "indo_rct"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    xgb.set_config(verbosity=0)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {text}", flush=True)

    builders = {"heart": heart_task, "indo_rct": indo_rct_task}
    tasks = {name: run_task(builders[name](), args.ehr_bench, log) for name in args.tasks}
    out = {
        "date": datetime.date.today().isoformat(),
        "tasks": tasks,
        "aims": aims(tasks),
        "protocol": {
            "fixed_params": FIXED,
            "tree_grid": {k: sorted({c[k] for c in TREE_GRID}) for k in TREE_GRID[0]}
            | {"rounds": list(TREE_ROUNDS)},
            "bagging_grid": {"eta": [c["eta"] for c in BAGGING_GRID], "rounds": list(BAGGING_ROUNDS)},
            **PROTOCOL,
            "histogram_trainer": tree_methods.run_federated_histogram.__module__,
            "seeds": list(SEEDS),
        },
        "seconds": {"total": round(time.perf_counter() - started, 1)},
        "command": "python scripts/bench_xgboost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "xgboost": xgb.__version__,
            "load_average_at_end": list(os.getloadavg()),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(clean_metrics(out), indent=2) + "\n")
    log(f"wrote {args.out}: {len(tasks)} tasks in {out['seconds']['total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
