"""PNG plots of a run report: the global metric per round, per-site metrics with intervals,
per-site curves over rounds and the cross-site matrix as a heat map."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fedhealth.reports.summary import AUC_LABEL  # noqa: E402
from fedhealth.training.site_metrics import METRICS  # noqa: E402

CURVES = (("train_loss", "training loss"), ("global_loss", "validation loss (received model)"))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rounds_ylabel(split: str | None) -> str:
    """The y label of ``rounds.png``: the split the run record says the sites scored on."""
    return f"{split} metric, all sites" if split else "metric, all sites (split not recorded)"


def plot_rounds(report: dict, path: Path) -> Path:
    """The global model's accuracy and AUC (as received by the sites) per round, on the split the
    run record says the sites scored it on."""
    history = report["history"]
    split = report.get("eval_split")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [h["round"] for h in history]
    labels = (("global_accuracy", "accuracy, all sites' patients"), ("global_auc", f"AUC ({AUC_LABEL})"))
    for key, label in labels:
        ax.plot(xs, [h[key] for h in history], marker="o", label=label)
    ax.set_xlabel("round (model sent to the sites at its start)")
    ax.set_ylabel(rounds_ylabel(split))
    ax.set_title(f"{report['job']}: global model per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_site_intervals(report: dict, path: Path) -> Path:
    """Each site's four metrics with 95% bootstrap intervals; the gate threshold on the primary one."""
    sites = [s for s in report["sites"] if s.get("metrics")]
    gate = report.get("gate") or {}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.4), sharey=True)
    for ax, metric in zip(axes, METRICS, strict=True):
        for i, site in enumerate(sites):
            m = site["metrics"].get(metric) or {}
            if m.get("value") is None:
                ax.text(i, 0.05, "n/a", ha="center", fontsize=8)
                continue
            lo, hi = m.get("lo") or m["value"], m.get("hi") or m["value"]
            color = "tab:red" if site.get("flagged") else "tab:blue"
            ax.errorbar(
                i, m["value"], yerr=[[m["value"] - lo], [hi - m["value"]]], fmt="o", color=color, capsize=4
            )
        if metric == gate.get("metric"):
            ax.axhline(gate["threshold"], color="tab:red", linestyle="--", linewidth=1, label="threshold")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_xticks(range(len(sites)), [s["name"] for s in sites], rotation=35, ha="right", fontsize=8)
        ax.set_title(metric)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final global model, 95% CI")
    return _save(fig, path)


def plot_site_curves(report: dict, path: Path) -> Path:
    """Per-site training and validation loss over rounds."""
    curves = report.get("curves", {})
    fig, axes = plt.subplots(1, len(CURVES), figsize=(11, 3.6))
    for ax, (key, label) in zip(axes, CURVES, strict=True):
        for site, series in curves.items():
            values = series.get(key, [])
            ax.plot(range(len(values)), values, marker=".", label=site)
        ax.set_title(label)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    divergence = report.get("divergence") or {}
    if divergence.get("diverging"):
        fig.suptitle("WARNING: sites' losses diverge", color="tab:red")
    return _save(fig, path)


def plot_cross_site(report: dict, path: Path, metric: str | None = None) -> Path:
    """The cross-site matrix (sites x models) as a heat map."""
    matrices = report.get("cross_site_matrix", {})
    metric = metric or ((report.get("gate") or {}).get("metric")) or next(iter(matrices), "accuracy")
    matrix = matrices.get(metric) or {"models": [], "sites": [], "values": []}
    values = [[float("nan") if v is None else v for v in row] for row in matrix["values"]]
    fig, ax = plt.subplots(figsize=(1.4 * max(len(matrix["models"]), 2) + 2, 0.6 * max(len(values), 2) + 1.6))
    image = ax.imshow(values or [[float("nan")]], vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(
                j, i, "n/a" if v != v else f"{v:.2f}", ha="center", va="center", color="white", fontsize=8
            )
    ax.set_xticks(range(len(matrix["models"])), matrix["models"], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(matrix["sites"])), matrix["sites"], fontsize=8)
    ax.set_xlabel("model (SRV_ = global; a site name = that site's local model)")
    ax.set_ylabel("evaluated at site")
    ax.set_title(f"cross-site {metric}")
    fig.colorbar(image, ax=ax)
    return _save(fig, path)


def write_plots(report: dict, out_dir: Path) -> list[Path]:
    """All report plots into ``out_dir``."""
    out_dir = Path(out_dir)
    return [
        plot_rounds(report, out_dir / "rounds.png"),
        plot_site_intervals(report, out_dir / "site_metrics.png"),
        plot_site_curves(report, out_dir / "site_curves.png"),
        plot_cross_site(report, out_dir / "cross_site.png"),
    ]
