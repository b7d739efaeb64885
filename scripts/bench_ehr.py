"""Missing data in the heart federation: complete-case (FLamby's rows) vs missingness-aware, 5 seeds.

Run as ``python scripts/bench_ehr.py --out results/bench_ehr.json`` (``make bench-ehr``).

FLamby's Fed-Heart-Disease keeps 740 of the 920 UCI patients (every row complete in 10 features) and
drops ``slope``, ``ca`` and ``thal``. The EHR path keeps all 920: each hospital exports its table in
its own dialect (:mod:`fedhealth_tools.data.heart_dialects`), the ``tabular`` task harmonizes it with
the heart dictionary and the site's mapping, the server aligns the features from the sites'
small-cell-suppressed profiles with the shipped heart jobs' policy (``job_specs/heart.json``: union,
mean imputation, missingness indicators) and the sites train on the aligned columns. Methods, all
logistic regression trained by FedAvg in the in-process loop
(:func:`fedhealth_tools.federation.loop.run_loop`; pooled = one site holding every training row under
the same preprocessing):

- ``complete_case_federated`` / ``complete_case_pooled``: FLamby's rows and encoding (13 columns),
  global scaling from federated statistics.
- ``missingness_aware_federated`` / ``missingness_aware_pooled``: all patients, the aligned schema.

Every method is scored per hospital on the same test patients: FLamby's test split plus the held-out
share of the patients FLamby dropped (split 66/34 as FLamby splits). A complete-case model cannot
score a patient with a missing value among its features (all the dropped ones): its AUC is over the
patients it can score and ``patients_scored`` says how many. The missingness-aware models are also
scored on FLamby's test patients alone (the comparison on the same patients, which the aims use) and
on the dropped patients alone. Learning rate, weight decay and rounds are chosen per method by
federated cross-validation inside the training splits (client-average out-of-fold AUC); the test
splits are read only for the final figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fedhealth.algorithms.fedopt import ServerOptimizer
from fedhealth.constants import HEART_SITES
from fedhealth.data.site_data import RAW_COLUMNS, SiteTable
from fedhealth.ehr.mapping import SiteMapping
from fedhealth.tasks.heart import HeartTask
from fedhealth.tasks.tabular import TabularSite, TabularTask
from fedhealth.training.loops import predict
from fedhealth.training.metrics import clean_metrics
from fedhealth_tools.data.heart_canonical import TARGET, canonical_sites, heart_dictionary
from fedhealth_tools.data.heart_dialects import export_site
from fedhealth_tools.data.heart_source import load_heart_sites
from fedhealth_tools.federation.ehr import (
    PrealignedTabularTask,
    align_sites,
    job_alignment_policy,
    pooled_site,
    take,
)
from fedhealth_tools.federation.loop import run_loop, server_steps
from fedhealth_tools.federation.rules import FedOptServer
from fedhealth_tools.jobs.spec import SPECS_DIR, load_family, render_job
from fedhealth_tools.training.ehr_scoring import (
    aim_close,
    aim_gain,
    complete_case_mask,
    subset_auc,
    summarize,
)
from fedhealth_tools.training.tuning import grid, stratified_fold_ids

SEEDS = (42, 43, 44, 45, 46)
CV_FOLDS, CV_REPEATS = 3, 2
BATCH_SIZE = 16  # the hospitals' default floor, as bench_heart's kit block
MAX_ROUNDS = 40
CHECKPOINTS = (1, 2, 3, 5, 10, 15, 20, 30, 40)  # rounds at which cross-validation scores a candidate
# lr up to the sites' default ceiling (1.0). A first run with lr <= 0.3, weight decay <= 0.01 and
# rounds >= 2 saw CV choose lr 0.3 with 2 rounds (a corner of the grid), so the grid was widened. The
# criterion was client-average AUC until a second run; it is log-loss since (docs/benchmarks.md says why
# and that the change came after seeing that run's test figures).
CANDIDATES = grid(lr=[0.03, 0.1, 0.3, 1.0], weight_decay=[0.0, 1e-2, 1e-1])
# The FedOpt jobs' server lr on the tabular path (their local settings as shipped): --tune-fedopt.
FEDOPT_JOBS = ("heart_fedadam", "heart_fedyogi")
FEDOPT_SERVER_LRS = (0.01, 0.03, 0.1, 0.3)
# Rounds scored, up to the 18 the jobs shipped with before (fixed: not read from the job it tunes).
FEDOPT_CHECKPOINTS = (1, 2, 3, 5, 10, 15, 18)
HEART_SPEC = SPECS_DIR / "heart.json"  # the shipped heart jobs: the benchmark aligns as they do
AIM_GAIN, AIM_SITE_TOLERANCE, AIM_POOLED_TOLERANCE = 0.01, 0.01, 0.005
METHODS = (
    "complete_case_federated",
    "complete_case_pooled",
    "missingness_aware_federated",
    "missingness_aware_pooled",
)
PROTOCOL = {
    "model": "logistic regression (TabularNet logreg), FedAvg, SGD, batch 16, one local epoch a round",
    "cross_validation": (
        f"{CV_FOLDS}-fold x {CV_REPEATS} repeats inside each hospital's training split; the lowest "
        "client-average out-of-fold log-loss (the kit's tuning rule, fedhealth_tools.training.tuning); "
        "ties go to the earlier round"
    ),
    "complete_case_encoding": (
        "FLamby's 10 features, cp and restecg one-hot drop-first (13 columns), cholesterol 0 kept as a "
        "value, global scaling from federated statistics"
    ),
    "missingness_aware_encoding": (
        "the heart dictionary's 13 features harmonized from each hospital's own dialect, aligned by "
        "the server from small-cell-suppressed profiles with the shipped heart jobs' policy (the schema "
        "below: kept columns, dropped features)"
    ),
    "test_patients": "FLamby's test split plus the held-out share (34 %) of the patients FLamby dropped",
    "timings": "other jobs shared the machine's cores during the run: the seconds are not claims",
}
# Rows of a hospital: (train positions, evaluation part "train" or "test", evaluation positions).
Rows = dict[str, tuple[np.ndarray, str, np.ndarray]]


POLICY = job_alignment_policy(json.loads(HEART_SPEC.read_text()), label=HEART_SPEC.name)


@dataclass
class Setup:
    """A method's trainable sites for one set of rows: the task, the training sites, the scored sites."""

    task: object
    train_sites: list
    eval_sites: list
    schema: dict | None = None


def _codes() -> dict[str, dict[str, float]]:
    features = {f["name"]: f for f in heart_dictionary()["features"]}
    return {n: {c: float(v[0]) for c, v in features[n]["codes"].items()} for n in ("cp", "restecg")}


def flamby_table(rows: pd.DataFrame) -> SiteTable:
    """Canonical rows in FLamby's coding (UCI codes, 10 features, cholesterol 0 kept as a value)."""
    features = rows[list(RAW_COLUMNS)].copy()
    for name, codes in _codes().items():
        features[name] = features[name].map(codes)
    return SiteTable(
        features=features.astype("float64").reset_index(drop=True),
        labels=rows[TARGET].to_numpy("float32"),
    )


class Data:
    """Every hospital's canonical rows, its harmonized dialect export, and the checks that tie them."""

    def __init__(self) -> None:
        self.canonical = canonical_sites()
        self.task = TabularTask(dictionary=heart_dictionary())
        self.harmonized = {}
        flamby = load_heart_sites()
        for site, split in self.canonical.items():
            tables, mapping = export_site(split)
            s = self.task.site_from_frames(
                site, tables["train"], tables["test"], SiteMapping.from_dict(mapping)
            )
            self.harmonized[site] = {"train": s.train_table, "test": s.test_table}
            for part in ("train", "test"):
                rows = getattr(split, part)
                mask = complete_case_mask(rows, RAW_COLUMNS)
                if not np.array_equal(mask, rows["flamby"].to_numpy()):
                    raise RuntimeError(f"{site}/{part}: FLamby's rows are not the complete cases")
                ours, theirs = flamby_table(rows[mask]), getattr(flamby[site], part)
                if not np.allclose(ours.features.to_numpy(), theirs[list(RAW_COLUMNS)].to_numpy("float64")):
                    raise RuntimeError(f"{site}/{part}: the complete-case rows differ from FLamby's split")

    def rows(self, part: str, site: str) -> pd.DataFrame:
        return getattr(self.canonical[site], part)


def complete_case_setup(data: Data, rows: Rows, pooled: bool) -> Setup:
    task = HeartTask(scaling="global", chol_zero_as_missing=False)
    train, evals = {}, {}
    for site, (tr, part, ev) in rows.items():
        train_rows, eval_rows = data.rows("train", site).iloc[tr], data.rows(part, site).iloc[ev]
        train[site] = flamby_table(train_rows[train_rows["flamby"]])
        evals[site] = task.site_from_tables(site, train[site], flamby_table(eval_rows[eval_rows["flamby"]]))
    sites = list(evals.values())
    server_steps(task, sites)  # the federation's global scaling (what pooled training rows give too)
    if not pooled:
        return Setup(task, sites, sites)
    union = SiteTable(
        features=pd.concat([t.features for t in train.values()], ignore_index=True),
        labels=np.concatenate([t.labels for t in train.values()]),
    )
    return Setup(task, [task.site_from_tables("pooled", union, union)], sites)


def missingness_aware_setup(data: Data, rows: Rows, pooled: bool) -> Setup:
    task = PrealignedTabularTask(dictionary=heart_dictionary())
    sites = [
        TabularSite(
            site,
            take(data.harmonized[site]["train"], tr),
            take(data.harmonized[site][part], ev),
            data.task.data_dictionary,
        )
        for site, (tr, part, ev) in rows.items()
    ]
    schema = align_sites(sites, POLICY)
    train = [pooled_site(sites, schema)] if pooled else sites
    return Setup(task, train, sites, schema)


def setup_for(method: str) -> Callable[[Data, Rows], Setup]:
    build = complete_case_setup if method.startswith("complete_case") else missingness_aware_setup
    return lambda data, rows: build(data, rows, method.endswith("pooled"))


def train(setup: Setup, params: dict, *, rounds: int, seed: int, on_round=None):
    model = setup.task.build_model(setup.train_sites[0], arch="logreg", seed=seed)
    local = {"batch_size": BATCH_SIZE, "local_epochs": 1, "weight_decay": params["weight_decay"]}
    n = len(setup.train_sites)
    rule = None
    if "server_opt" in params:  # FedOpt (the heart_fedadam / heart_fedyogi jobs' server step)
        server = {k: params[k] for k in ("beta1", "beta2", "tau")}
        rule = FedOptServer(
            optimizer=ServerOptimizer(kind=params["server_opt"], lr=params["server_lr"], **server)
        )
    return run_loop(
        setup.task,
        setup.train_sites,
        model,
        rounds=rounds,
        lr=params["lr"],
        local=local,
        rule=rule,
        seeds=[seed * 1000 + i for i in range(n)],
        on_round=on_round,
    ).model


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities ``p`` for labels ``y``."""
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())


def predictions(model, setup: Setup) -> dict[str, np.ndarray]:
    return {s.name: predict(model, s.arrays("test")[0]) for s in setup.eval_sites}


def cross_validate(
    method: str, data: Data, log, *, candidates: list[dict] = CANDIDATES, checkpoints: tuple = CHECKPOINTS
) -> dict:
    """The candidate and round with the lowest client-average out-of-fold log-loss (training splits only)."""
    build = setup_for(method)
    scores: dict[tuple[int, int], list[tuple[float, float]]] = {}
    left_out: set[str] = set()
    for repeat in range(CV_REPEATS):
        ids = {
            site: stratified_fold_ids(
                data.rows("train", site)[TARGET].to_numpy(), n_folds=CV_FOLDS, seed=repeat * 1000 + i
            )
            for i, site in enumerate(HEART_SITES)
        }
        setups = [
            build(
                data, {s: (np.flatnonzero(f != k), "train", np.flatnonzero(f == k)) for s, f in ids.items()}
            )
            for k in range(CV_FOLDS)
        ]
        for c, params in enumerate(candidates):
            held: dict[int, dict[str, list]] = {r: {s: [] for s in HEART_SITES} for r in checkpoints}
            for setup in setups:

                def keep(r, result, setup=setup, held=held):
                    if r + 1 in checkpoints:
                        for site, p in predictions(result.model, setup).items():
                            held[r + 1][site].append(p)

                train(setup, params, rounds=max(checkpoints), seed=repeat, on_round=keep)
            labels = {
                s: np.concatenate([st.eval_sites[i].arrays("test")[1] for st in setups])
                for i, s in enumerate(HEART_SITES)
            }
            for r in checkpoints:
                preds = {s: np.concatenate(held[r][s]) for s in HEART_SITES}
                per_site = {
                    s: subset_auc(labels[s], preds[s], np.ones(len(labels[s]), bool)) for s in HEART_SITES
                }
                values = [v for v in per_site.values() if v is not None]
                losses = [log_loss(labels[s], preds[s]) for s in HEART_SITES]
                scores.setdefault((c, r), []).append((float(np.mean(losses)), float(np.mean(values))))
                left_out |= {s for s, v in per_site.items() if v is None}
    # The kit's tuning rule (fedhealth_tools.training.tuning.CVScore): the lowest client-average held-out
    # log-loss, a proper scoring rule; AUC on folds with a handful of negatives ranks settings by noise.
    (c, r), best = min(scores.items(), key=lambda kv: (np.mean([x[0] for x in kv[1]]), kv[0][1], kv[0][0]))
    chosen = {
        **candidates[c],
        "rounds": r,
        "cv_client_avg_log_loss": float(np.mean([x[0] for x in best])),
        "cv_client_avg_auc": float(np.mean([x[1] for x in best])),
        "cv_sites_without_auc": sorted(left_out),  # held-out rows of one class (switzerland, complete case)
    }
    log(f"{method}: CV chose {chosen}")
    return chosen


def score_seed(method: str, data: Data, setup: Setup, model) -> dict:
    """One seed's AUCs per hospital on the patients the method scores, FLamby's and the dropped ones."""
    preds = predictions(model, setup)
    out: dict = {"all": {}, "flamby": {}, "dropped": {}}
    dropped_y, dropped_p = [], []
    for site in HEART_SITES:
        rows = data.rows("test", site)
        scored = scored_mask(method, rows)
        if len(preds[site]) != scored.sum():
            raise RuntimeError(
                f"{method}/{site}: {len(preds[site])} predictions for {scored.sum()} scorable patients"
            )
        y = rows[TARGET].to_numpy()[scored]
        flamby = rows["flamby"].to_numpy()[scored]
        p = preds[site]
        out["all"][site] = subset_auc(y, p, np.ones(len(y), bool))
        out["flamby"][site] = subset_auc(y, p, flamby)
        out["dropped"][site] = subset_auc(y, p, ~flamby)
        dropped_y.append(y[~flamby])
        dropped_p.append(p[~flamby])
    y, p = np.concatenate(dropped_y), np.concatenate(dropped_p)
    out["dropped_all_hospitals"] = subset_auc(y, p, np.ones(len(y), bool))
    return out


def scored_mask(method: str, rows: pd.DataFrame) -> np.ndarray:
    """The test patients a method can score: complete cases only for the complete-case methods."""
    if method.startswith("complete_case"):
        return complete_case_mask(rows, RAW_COLUMNS)
    return np.ones(len(rows), dtype=bool)


def negatives(data: Data, masks: dict, flamby: dict, *, keep: bool) -> dict[str, int]:
    """Scored test patients without disease per hospital among FLamby's (``keep``) or the dropped ones.

    An AUC over few negatives moves in large steps (switzerland's FLamby test split has one).
    """
    out = {}
    for site in HEART_SITES:
        rows = masks[site] & (flamby[site] if keep else ~flamby[site])
        out[site] = int((data.rows("test", site)[TARGET].to_numpy()[rows] == 0).sum())
    return out


def evaluate(method: str, data: Data, chosen: dict) -> dict:
    """Train on every training row with the chosen settings, once per seed, and score the test patients."""
    build = setup_for(method)
    full = {
        s: (np.arange(len(data.rows("train", s))), "test", np.arange(len(data.rows("test", s))))
        for s in HEART_SITES
    }
    runs = []
    for seed in SEEDS:
        setup = build(data, full)
        runs.append(score_seed(method, data, setup, train(setup, chosen, rounds=chosen["rounds"], seed=seed)))
    masks = {s: scored_mask(method, data.rows("test", s)) for s in HEART_SITES}
    flamby = {s: data.rows("test", s)["flamby"].to_numpy() for s in HEART_SITES}
    headline = summarize([r["all"] for r in runs], HEART_SITES)
    dropped_all = [r["dropped_all_hospitals"] for r in runs if r["dropped_all_hospitals"] is not None]
    return {
        **{k: headline[k] for k in ("client_avg_auc", "client_avg_auc_sd", "per_site_auc")},
        "patients_scored": {s: int(m.sum()) for s, m in masks.items()},
        "patients_not_scored": {s: int((~m).sum()) for s, m in masks.items()},
        "test_patients": {s: len(m) for s, m in masks.items()},
        "train_patients": {s: int(scored_mask(method, data.rows("train", s)).sum()) for s in HEART_SITES},
        "auc_over": "the test patients this method can score (patients_scored)",
        "client_avg_auc_per_seed": headline["client_avg_auc_per_seed"],
        "flamby_test": {
            **summarize([r["flamby"] for r in runs], HEART_SITES),
            "patients": {s: int((masks[s] & flamby[s]).sum()) for s in HEART_SITES},
            "negatives": negatives(data, masks, flamby, keep=True),
        },
        "dropped_test": {
            **summarize([r["dropped"] for r in runs], HEART_SITES),
            "patients": {s: int((masks[s] & ~flamby[s]).sum()) for s in HEART_SITES},
            "negatives": negatives(data, masks, flamby, keep=False),
            "all_hospitals_auc": float(np.mean(dropped_all)) if dropped_all else None,
            "all_hospitals_auc_sd": float(np.std(dropped_all, ddof=1)) if len(dropped_all) > 1 else None,
        },
        "hyperparameters": chosen,
    }


def schema_summary(data: Data) -> dict:
    """The aligned schema of the full training splits: the model's columns and the dropped features."""
    full = {
        s: (np.arange(len(data.rows("train", s))), "test", np.arange(len(data.rows("test", s))))
        for s in HEART_SITES
    }
    schema = missingness_aware_setup(data, full, False).schema or {}
    return {k: schema[k] for k in ("columns", "dropped", "sites")}


def aims(methods: dict) -> dict:
    """The issue's three aims, each with its numbers and a verdict."""
    cc, ma = methods["complete_case_federated"], methods["missingness_aware_federated"]
    same = aim_gain(
        ma["flamby_test"]["per_site_auc"], cc["per_site_auc"], margin=AIM_GAIN, tolerance=AIM_SITE_TOLERANCE
    )
    every = aim_gain(ma["per_site_auc"], cc["per_site_auc"], margin=AIM_GAIN, tolerance=AIM_SITE_TOLERANCE)
    pooled = {
        family: aim_close(
            methods[f"{family}_federated"]["client_avg_auc"],
            methods[f"{family}_pooled"]["client_avg_auc"],
            tolerance=AIM_POOLED_TOLERANCE,
        )
        for family in ("missingness_aware", "complete_case")
    }
    return {
        "gain_over_complete_case": {
            "aim": f"missingness_aware_federated client-average AUC >= complete_case_federated + {AIM_GAIN}",
            "judged_on": "FLamby's test patients, which both methods score",
            "verdict": "met" if same["client_avg_met"] else "not met",
            **same,
            "on_all_scored_patients": every,
        },
        "no_hospital_worse": {
            "aim": f"no hospital's AUC lower than complete-case by more than {AIM_SITE_TOLERANCE}",
            "judged_on": "FLamby's test patients, which both methods score",
            "verdict": "met" if same["no_site_worse_met"] else "not met",
            "per_site_gain": same["per_site_gain"],
            "worst_site": same["worst_site"],
            "sites_left_out": same["sites_left_out"],
        },
        "federated_within_pooled": {
            "aim": (
                "missingness_aware_federated client-average AUC >= missingness_aware_pooled "
                f"- {AIM_POOLED_TOLERANCE}"
            ),
            "judged_on": "every test patient (both score all of them)",
            "verdict": "met" if pooled["missingness_aware"]["met"] else "not met",
            **pooled["missingness_aware"],
            "complete_case": pooled["complete_case"],
        },
    }


def fedopt_candidates(job_spec: dict) -> dict[str, list[dict]]:
    """Per FedOpt job of the heart family, its server settings with the server lr on a grid."""
    out = {}
    for job in FEDOPT_JOBS:
        server = render_job(job_spec, job)["app/config/config_fed_server.json"]
        args = next(c["args"] for c in server["components"] if c["id"] == "shareable_generator")
        base = {"lr": args["lr"], "weight_decay": 0.0, "server_opt": args["server_opt"]}
        base |= {k: args[k] for k in ("beta1", "beta2", "tau")}
        out[job] = [{**base, "server_lr": v} for v in FEDOPT_SERVER_LRS]
    return out


def tune_fedopt(out: Path, log) -> int:
    """CV of the FedOpt jobs' server learning rate on the missingness-aware sites (training splits only)."""
    spec = load_family(HEART_SPEC)
    data = Data()
    chosen = {}
    for job, candidates in fedopt_candidates(spec).items():
        chosen[job] = cross_validate(
            "missingness_aware_federated", data, log, candidates=candidates, checkpoints=FEDOPT_CHECKPOINTS
        )
    result = {
        "chosen": chosen,
        "server_lr_grid": list(FEDOPT_SERVER_LRS),
        "rounds_scored": list(FEDOPT_CHECKPOINTS),
        "criterion": "lowest client-average out-of-fold log-loss, 3-fold x 2 repeats in the training splits",
        "command": "python scripts/bench_ehr.py --tune-fedopt " + str(out),
        "date": datetime.date.today().isoformat(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(clean_metrics(result), indent=2) + "\n")
    log(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_ehr.json"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--tune-fedopt", type=Path, metavar="OUT", help="cross-validate the FedOpt jobs' server lr instead"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a logistic regression: threads cost more than they give on shared cores
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {text}", flush=True)

    if args.tune_fedopt is not None:
        return tune_fedopt(args.tune_fedopt, log)
    data = Data()
    methods, seconds = {}, {}
    for method in args.methods:
        t0 = time.perf_counter()
        methods[method] = evaluate(method, data, cross_validate(method, data, log))
        seconds[method] = round(time.perf_counter() - t0, 1)
        log(f"{method}: client-avg AUC {methods[method]['client_avg_auc']:.3f}")
    out = {
        "methods": methods,
        "aims": aims(methods) if set(METHODS) <= set(methods) else None,
        "schema": schema_summary(data),
        "protocol": {
            **PROTOCOL,
            "seeds": list(SEEDS),
            "grid": {
                "lr": sorted({c["lr"] for c in CANDIDATES}),
                "weight_decay": sorted({c["weight_decay"] for c in CANDIDATES}),
                "rounds": list(CHECKPOINTS),
            },
            "alignment_policy": asdict(POLICY),
        },
        "seconds": {**seconds, "total": round(time.perf_counter() - started, 1)},
        "command": "python scripts/bench_ehr.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()),
        },
        "date": datetime.date.today().isoformat(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(clean_metrics(out), indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
