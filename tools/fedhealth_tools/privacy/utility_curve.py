"""The privacy–utility curve on Fed-Heart-Disease: test accuracy against ε, 5 seeds each.

For every ε in {1, 2, 5, 10, 50, ∞} the federation
(:func:`fedhealth_tools.training.federation.run_federation`,
the FLARE job's in-process twin) trains with DP-SGD at every site through the executor's own
:func:`fedhealth.privacy.site_dp.site_trainer` (∞: no DP). Hyper-parameters (learning rate, clip
norm, batch size) are chosen per ε by federated cross-validation inside the training splits
(:mod:`fedhealth_tools.training.tuning`); the test splits are read only for the final numbers. The metric
is FLamby's: the client-average test accuracy over the four hospitals (du Terrail et al. 2022).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fedhealth.constants import M_ACCURACY
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.data.heart_source import load_heart_sites
from fedhealth_tools.training.federation import run_federation
from fedhealth_tools.training.trainers import Report, Trainer, build_model
from fedhealth_tools.training.tuning import CVScore, grid, make_folds, tune

EPSILONS: tuple[float | None, ...] = (1.0, 2.0, 5.0, 10.0, 50.0, None)  # None: no DP (ε = ∞)
SEEDS = (0, 1, 2, 3, 4)
ROUNDS = 15  # as jobs/heart_dp
DP_GRID = grid(lr=[0.1, 0.3], max_grad_norm=[0.5, 1.0], batch_size=[16, 32])
PLAIN_GRID = grid(lr=[0.03, 0.1, 0.3], batch_size=[16, 32])
CV_FOLDS, TUNE_SEED = 3, 0
# A check that the noise is real: below the curve's range, with the ε = 1 row's settings (not tuned).
SANITY_EPSILONS = (0.1, 0.3)
# FLamby's Fed-Heart-Disease with Opacus, under its own protocol (per-site scaling, batch 4).
FLAMBY_ANCHOR = {"epsilon_1": 0.685, "non_private": 0.713}


def _label(epsilon: float | None) -> str:
    return "inf" if epsilon is None else f"{epsilon:g}"


def dp_trainer(params: Mapping[str, object], epsilon: float | None) -> Trainer:
    """FedAvg with DP-SGD at each site (``epsilon`` None: plain FedAvg), logistic regression."""

    def train(sites: Sequence[HeartSite], report: Report):
        dp = (
            None if epsilon is None else {"target_epsilon": epsilon, "max_grad_norm": params["max_grad_norm"]}
        )
        result = run_federation(
            sites,
            lambda: build_model({"arch": "logreg", "seed": params["seed"]}, sites[0].n_features),
            rounds=int(params.get("rounds", ROUNDS)),
            lr=float(params["lr"]),
            seed=int(params["seed"]),
            batch_size=int(params["batch_size"]),
            dp=dp,
        )
        report(int(params.get("rounds", ROUNDS)), result.model)
        train.ledgers = result.ledgers  # type: ignore[attr-defined]
        return result.model

    return train


def heart_sites(*, split: str = "train") -> tuple[dict, list[HeartSite]]:
    """The four hospitals' tables (FLamby's split) and scaled sites (global federated scaling)."""
    from fedhealth.data.site_data import TARGET, SiteTable
    from fedhealth_tools.training.federation import federated_scaling

    def table(frame) -> SiteTable:
        return SiteTable(features=frame.drop(columns=TARGET), labels=frame[TARGET].to_numpy("float32"))

    tables = {n: (table(s.train), table(s.test)) for n, s in load_heart_sites().items()}
    sites = [HeartSite(n, tr, te) for n, (tr, te) in tables.items()]
    federated_scaling(sites)
    return tables, sites


def tune_epsilon(
    epsilon: float | None, folds: Sequence[Sequence[HeartSite]], candidates: list[dict]
) -> CVScore:
    """The candidate with the best cross-validated held-out log-loss at this ε (training data only)."""
    best, _ = tune([{**c, "seed": TUNE_SEED} for c in candidates], lambda p: dp_trainer(p, epsilon), folds)
    return best


def evaluate_seeds(epsilon: float | None, params: Mapping, sites: Sequence[HeartSite]) -> dict:
    """Train once per seed with ``params`` and score the client-average test accuracy."""
    metrics, achieved = [], []
    for seed in SEEDS:
        trainer = dp_trainer({**params, "seed": seed}, epsilon)
        model = trainer(sites, lambda step, m: None)
        metrics.append(float(np.mean([s.evaluate(model)[M_ACCURACY] for s in sites])))
        ledgers = getattr(trainer, "ledgers", {})
        achieved.append({n: ledger["epsilon"] for n, ledger in ledgers.items()})
    deltas = {s.name: 0.1 / s.n_train for s in sites} if epsilon is not None else {}
    return {
        "target_epsilon": epsilon,
        "achieved_epsilon": max(max(a.values()) for a in achieved) if epsilon is not None else None,
        "achieved_epsilon_per_site": {n: max(a[n] for a in achieved) for n in achieved[0]} if epsilon else {},
        "delta": max(deltas.values()) if deltas else None,
        "delta_per_site": deltas,
        "metric": "client-average test accuracy",
        "metric_mean": float(np.mean(metrics)),
        "metric_sd": float(np.std(metrics, ddof=1)),
        "metric_per_seed": metrics,
        "params": {k: v for k, v in params.items() if k != "seed"},
    }


def run_curve(
    *, epsilons: Sequence[float | None] = EPSILONS, out_json: Path | None = None, out_png: Path | None = None
) -> dict:
    """Tune per ε by cross-validation, train 5 seeds, score on test; write the JSON and the PNG."""
    import torch

    torch.set_num_threads(1)  # a 15-weight model: one thread beats several competing for the CPU
    start = time.time()
    tables, sites = heart_sites()
    folds = make_folds(
        {n: t[0] for n, t in tables.items()}, n_folds=CV_FOLDS, seed=TUNE_SEED, chol_zero_as_missing=True
    )
    rows = []
    for epsilon in epsilons:
        best = tune_epsilon(epsilon, folds, PLAIN_GRID if epsilon is None else DP_GRID)
        row = evaluate_seeds(epsilon, best.params, sites)
        row["cv"] = {"accuracy": best.accuracy, "loss": best.loss}
        rows.append(row)
        print(
            f"epsilon={_label(epsilon)}: {row['metric_mean']:.3f} ± {row['metric_sd']:.3f} {row['params']}",
            flush=True,
        )
    first_dp = next((r for r in rows if r["target_epsilon"] is not None), None)
    sanity = [evaluate_seeds(e, first_dp["params"], sites) for e in SANITY_EPSILONS] if first_dp else []
    for row in sanity:
        print(f"sanity epsilon={row['target_epsilon']:g}: {row['metric_mean']:.3f} ± {row['metric_sd']:.3f}")
    result = {
        "dataset": "Fed-Heart-Disease (FLamby split), 4 hospitals, logistic regression, global scaling",
        "protocol": f"FedAvg {ROUNDS} rounds, 1 local epoch, DP-SGD at each site (RDP, delta=0.1/n); "
        f"lr/clip/batch tuned per epsilon by {CV_FOLDS}-fold federated CV on the training splits",
        "seeds": list(SEEDS),
        "rows": rows,
        "sanity_rows": sanity,
        "flamby_anchor": FLAMBY_ANCHOR,
        "seconds": time.time() - start,
    }
    if out_json is not None:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(result, indent=2) + "\n")
    if out_png is not None:
        plot_curve(result, Path(out_png))
    return result


def table(result: dict, *, metric: str = "accuracy", extra: dict[str, str] | None = None) -> str:
    """The curve as a Markdown table, with the loss against the non-private row.

    Args:
        result: what a curve run returned (``rows`` with ``target_epsilon``, ``achieved_epsilon``,
            ``delta``, ``metric_mean``, ``metric_sd``).
        metric: the metric's column name.
        extra: further columns, header -> format string over the row (e.g. ``"{lr:g}"``).
    """
    extra = extra or {}
    plain = next((r["metric_mean"] for r in result["rows"] if r["target_epsilon"] is None), None)
    headers = ["target ε", "achieved ε (max site)", "δ (max site)", f"{metric} mean ± sd", "vs no DP", *extra]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---:|" * len(headers)]
    for r in result["rows"]:
        cells = [
            "∞ (no DP)" if r["target_epsilon"] is None else f"{r['target_epsilon']:g}",
            "–" if r["achieved_epsilon"] is None else f"{r['achieved_epsilon']:.3f}",
            "–" if r["delta"] is None else f"{r['delta']:.1e}",
            f"{r['metric_mean']:.3f} ± {r['metric_sd']:.3f}",
            "–" if plain is None else f"{100 * (r['metric_mean'] - plain):+.1f} pts",
            *(fmt.format(**r) for fmt in extra.values()),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curve(
    result: dict,
    path: Path,
    *,
    title: str = "Fed-Heart-Disease: privacy–utility (5 seeds)",
    ylabel: str = "client-average test accuracy",
) -> Path:
    """The curve as a PNG: mean ± sd per ε on a log axis, the non-private row as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dp_rows = [r for r in result["rows"] if r["target_epsilon"] is not None]
    plain = [r for r in result["rows"] if r["target_epsilon"] is None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [r["target_epsilon"] for r in dp_rows]
    ax.errorbar(
        xs,
        [r["metric_mean"] for r in dp_rows],
        yerr=[r["metric_sd"] for r in dp_rows],
        marker="o",
        capsize=3,
        label="DP-SGD at each site",
    )
    sanity = result.get("sanity_rows", [])
    if sanity:
        ax.errorbar(
            [r["target_epsilon"] for r in sanity],
            [r["metric_mean"] for r in sanity],
            yerr=[r["metric_sd"] for r in sanity],
            marker="o",
            mfc="white",
            linestyle=":",
            capsize=3,
            color="C0",
            label="sanity: ε = 1 settings, smaller ε",
        )
    if plain:
        ax.axhline(plain[0]["metric_mean"], color="gray", linestyle="--", label="no DP (ε = ∞)")
    anchor = result.get("flamby_anchor")
    if anchor:
        ax.plot(
            [1.0],
            [anchor["epsilon_1"]],
            marker="s",
            color="C3",
            linestyle="",
            label="FLamby ε = 1 (own protocol)",
        )
        ax.axhline(anchor["non_private"], color="C3", linestyle=":", label="FLamby no DP")
    ax.set_xscale("log")
    ax.set_xlabel("target ε per site (δ = 0.1/n)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
