"""Privacy tables: the privacy-utility curves, DP-SGD step cost, the strict privacy scope."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f3, load, pm, pts, table


def _eps(x: float | None) -> str:
    return "∞ (no DP)" if x is None else f"{x:g}"


def privacy_utility(results: Path) -> str:
    data = load(results, "privacy_utility.json")
    rows_in = data["rows"]
    base = next(r for r in rows_in if r["target_epsilon"] is None)["metric_mean"]
    rows = [
        [
            _eps(r["target_epsilon"]),
            "–" if r["achieved_epsilon"] is None else f"{r['achieved_epsilon']:.3f}",
            "–" if r["delta"] is None else f"{r['delta']:.1e}",
            pm(r["metric_mean"], r["metric_sd"]),
            pts(r["metric_mean"] - base),
        ]
        for r in rows_in
    ]
    header = ["target ε", "achieved ε (max site)", "δ (max site)", "accuracy mean ± sd", "vs no DP"]
    return table(header, "rrrrr", rows)


def privacy_utility_cxr(results: Path) -> str:
    """The CXR curve; with ``reference_same_schedule`` also the gap to no DP on the DP rows' schedule."""
    data = load(results, "privacy_utility_cxr.json")
    rows_in = list(data["rows"])
    base = next(r for r in rows_in if r["target_epsilon"] is None)["metric_mean"]
    reference = data.get("reference_same_schedule")
    ref = reference["metric_mean"] if reference else None
    rows = []
    for r in [*rows_in, *([reference] if reference else [])]:
        label = "∞ (no DP, the DP rows' schedule)" if r is reference else _eps(r["target_epsilon"])
        rows.append(
            [
                label,
                "–" if r["achieved_epsilon"] is None else f"{r['achieved_epsilon']:.3f}",
                "–" if r["delta"] is None else f"{r['delta']:.1e}",
                f"{r['lr']:g}",
                pm(r["metric_mean"], r["metric_sd"]),
                pts(r["metric_mean"] - base),
                *([pts(r["metric_mean"] - ref)] if reference else []),
                pm(r["accuracy_mean"], r["accuracy_sd"]),
            ]
        )
    header = ["target ε", "achieved ε (max site)", "δ (max site)", "lr", "test AUC mean ± sd", "vs no DP"]
    if reference:
        header.append("vs no DP, same schedule")
    return table([*header, "accuracy"], "r" * (len(header) + 1), rows)


DP_MODELS = {"tabular_mlp": "tabular MLP (14-16-1)", "small_cnn": "SmallCNN 1×28×28"}


def dp_cost(results: Path) -> str:
    models = load(results, "bench_dp.json")["models"]
    rows = []
    for key, label in DP_MODELS.items():
        for variant, v in models[key]["variants"].items():
            rows.append(
                [
                    label,
                    variant,
                    f"{v['step_ms']:.1f}",
                    f"{v['slowdown_vs_plain']:.2f}",
                    f"{v['cpu_ms_per_step']:.1f}",
                    f"{v['cpu_slowdown_vs_plain']:.2f}",
                ]
            )
    header = ["model", "variant", "ms/step (wall)", "× plain (wall)", "CPU ms/step", "× plain (CPU)"]
    return table(header, "llrrrr", rows)


def strict_scope(results: Path) -> str:
    data = load(results, "bench_strict_scope.json")
    rows = [
        [
            "no strict scope",
            "–",
            "–",
            "–",
            pm(data["plain"]["accuracy"], data["plain"]["accuracy_sd"]),
            f3(data["plain"]["auc"]),
        ],
        [
            f"{data['setup']['strict_site']} left out",
            "–",
            "–",
            "–",
            pm(data["without_strict_site"]["accuracy"], data["without_strict_site"]["accuracy_sd"]),
            f3(data["without_strict_site"]["auc"]),
        ],
    ]
    for z, s in data["strict"].items():
        m = s["metrics"]
        rows.append(
            [
                f"strict scope, z {z}",
                f"{s['epsilon_after_19']:.1f}",
                f"{s['epsilon_after_25']:.1f}",
                f"{s['snr']:.2f}",
                pm(m["accuracy"], m["accuracy_sd"]),
                f3(m["auc"]),
            ]
        )
    header = ["run", "ε after 19 rounds", "ε after 25", "signal / noise", "accuracy", "AUC"]
    return table(header, "lrrrrr", rows)
