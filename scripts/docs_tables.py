"""Benchmark tables in the docs, generated from ``results/*.json``: never typed by hand.

A page asks for a table with a pair of markers; ``make docs-tables`` (this script) fills the lines
between them from the committed benchmark JSON and copies the result plots the docs show::

    <!-- BEGIN GENERATED: heart-bench -->
    (written by this script)
    <!-- END GENERATED -->

``python scripts/docs_tables.py --check`` writes nothing and exits 1 naming every stale page;
``tests/unit/docs/test_docs_tables.py`` runs the same check, so a table that no longer matches its
JSON fails CI. A marker naming no known table is an error that names the page and line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
END = "<!-- END GENERATED -->"
NOTE = "<!-- generated from results/*.json by `make docs-tables` (scripts/docs_tables.py): do not edit -->"
HEART_SITES = ("cleveland", "hungary", "switzerland", "va_long_beach")
# Plots the docs show: (file under results/, file under docs/).
ASSETS = (
    ("privacy_utility.png", "img/privacy_utility.png"),
    ("privacy_utility_cxr.png", "img/privacy_utility_cxr.png"),
)

Row = Sequence[object]


# --------------------------------------------------------------------------- formatting helpers


def _minus(text: str) -> str:
    return text.replace("-", "−") if text.startswith("-") else text


def f3(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def f4(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def pm(mean: float, sd: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def pts(delta: float, digits: int = 1) -> str:
    """A difference of two metrics in [0, 1] as signed percentage points."""
    return _minus(f"{delta * 100:+.{digits}f} pts")


def signed(x: float) -> str:
    return _minus(f"{x:+.3f}")


def ratio(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}×"


def nbytes(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n:.0f} B"


def site_label(name: str) -> str:
    return {"va_long_beach": "VA"}.get(name, name.replace("_", " ").title() if "_" in name else name)


def table(header: Row, align: str, rows: Sequence[Row]) -> str:
    """A Markdown table; ``align`` has one letter a column: ``l`` left, ``r`` right."""
    if len(align) != len(header):
        raise ValueError(f"table: {len(header)} columns but alignment {align!r}")
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(str(c) for c in header) + " |", "| " + " | ".join(rule) + " |"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table: a row has {len(row)} cells, the header {len(header)}: {row!r}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def load(results: Path, name: str) -> dict:
    path = results / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: benchmark result missing (run its `make bench-*` target)")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- heart


HEART_BENCH_ROWS = (
    ("flamby_pooled", "flamby_pooled"),
    ("flamby_fedavg", "flamby_fedavg"),
    ("flamby_fedprox", "flamby_fedprox"),
    ("flamby_local_cleveland", "flamby_local_cleveland"),
    ("kit_pooled_logreg", "kit_pooled_logreg"),
    ("kit_pooled_mlp", "kit_pooled_mlp"),
    ("kit_fedavg_logreg", "kit_fedavg_logreg"),
    ("kit_fedprox_logreg", "kit_fedprox_logreg"),
    ("kit_fedavg_mlp", "kit_fedavg_mlp"),
    ("kit_fedprox_mlp", "kit_fedprox_mlp"),
    ("kit_fedprox_mlp_finetuned", "kit_fedprox_mlp_finetuned"),
    ("kit_local_own_site_models", "kit_local_own_site_models"),
    ("kit_local_cleveland", "kit_local_cleveland"),
    ("kit_fedprox_mlp_finetuned_chol0_as_value", "kit_fedprox_mlp_finetuned_chol0_as_value"),
    ("kit_pooled_logreg_chol0_as_value", "kit_pooled_logreg_chol0_as_value"),
)


def heart_bench(results: Path) -> str:
    data = load(results, "bench_heart.json")
    methods, published = data["methods"], data["flamby_published"]
    best = data["aims"]["best_federated_by_cv"]
    rows = []
    for key, label in HEART_BENCH_ROWS:
        m = methods[key]
        name = f"{label} **(best FL by CV)**" if key == best else label
        pub = published.get(key, {}).get("client_avg")
        rows.append(
            [
                name,
                pm(m["client_avg"], m["client_avg_sd"]),
                f3(m["pooled_test"]),
                f"{f3(m['worst_site'])} {m['worst_site_name']}",
                *(f3(m["per_site"][s]) for s in HEART_SITES),
                "" if pub is None else f3(pub),
            ]
        )
    header = ["method", "client-avg ± sd", "pooled test", "worst hospital"]
    header += [site_label(s) for s in HEART_SITES] + ["FLamby published"]
    return table(header, "lrrlrrrrr", rows)


def heart_per_site(results: Path) -> str:
    comparison = load(results, "bench_heart.json")["per_site_comparison"]
    rows = [
        [
            site,
            f3(c["federated"]),
            f3(c["local_only"]),
            f3(c["pooled"]),
            signed(c["gain_vs_local"]),
            signed(c["gain_vs_pooled"]),
        ]
        for site, c in comparison.items()
    ]
    return table(["hospital", "federated", "local only", "pooled", "vs local", "vs pooled"], "lrrrrr", rows)


def heart_jobs(results: Path) -> str:
    data = load(results, "bench_jobs.json")
    rows = []
    for job, r in sorted(data["jobs"].items()):
        per_site = r["per_site"]
        worst = min(per_site, key=lambda s: per_site[s]["accuracy"])
        rows.append(
            [
                f"`{job}`",
                r["status"],
                r["rounds"],
                f"{r['seconds']:.1f}",
                f3(r["client_avg_accuracy"]),
                f"{f3(per_site[worst]['accuracy'])} {worst}",
                *(f"{f3(per_site[s]['accuracy'])} / {f3(per_site[s]['auc'])}" for s in HEART_SITES),
                r["gate"],
            ]
        )
    header = ["job", "status", "rounds", "s", "client-avg accuracy", "worst site"]
    header += [f"{site_label(s)} acc / AUC" for s in HEART_SITES] + ["gate"]
    return table(header, "llrrrlrrrrl", rows)


def heart_jobs_setup(results: Path) -> str:
    data = load(results, "bench_jobs.json")
    hw = data["hardware"]
    load_end = ", ".join(f"{x:.1f}" for x in data["load_average_at_end"])
    return (
        f"`{data['command']}`: {len(data['jobs'])} jobs, {data['seconds']:.0f} s in all, on "
        f"{hw['cpu_count']} cores (`{hw['platform']}`), load average at the end {load_end}."
    )


# --------------------------------------------------------------------------- reliability

FAULT_NOTES = {"killed_site": "rejoined after the job", "server_restart": "rounds counted once each"}


def faults(results: Path) -> str:
    scenarios = load(results, "bench_faults.json")["scenarios"]
    rows = []
    for name, s in scenarios.items():
        partial = {site: p for site, p in s["participation"].items() if p < 1.0}
        part = ", ".join(f"{site} {p:.0%}" for site, p in partial.items()) or "all 100%"
        if s.get("killed_site_rejoined"):
            part += ", rejoined after the job"
        rows.append(
            [
                name,
                "yes" if s["completed"] else f"no ({s['status']})",
                s["rounds"],
                f3(s["metric"]),
                f3(s["metric_clean"]),
                len(s["rejected_updates"]),
                part,
                f"{s['seconds']:.0f} s",
            ]
        )
    header = ["scenario", "completed", "rounds", "client-avg accuracy", "clean run", "rejected updates"]
    header += ["participation below 100%", "wall time"]
    return table(header, "llrrrrlr", rows)


def robust_rules(results: Path) -> str:
    rules = load(results, "bench_faults.json")["robust_rules"]
    rows = []
    for key, clean in rules.items():
        if clean["attacked"]:
            continue
        attacked = rules[f"{key}_attacked"]
        args = ", ".join(f"{k} {v}" for k, v in clean["args"].items())
        label = f"{clean['rule']} ({args})" if args else clean["rule"]
        rows.append(
            [
                label,
                pm(clean["client_avg"], clean["client_avg_sd"]),
                pm(attacked["client_avg"], attacked["client_avg_sd"]),
            ]
        )
    return table(["rule (in-process twin, 5 seeds)", "clean", "one site sends ×100 weights"], "lrr", rows)


# --------------------------------------------------------------------------- privacy


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
    rows_in = load(results, "privacy_utility_cxr.json")["rows"]
    base = next(r for r in rows_in if r["target_epsilon"] is None)["metric_mean"]
    rows = [
        [
            _eps(r["target_epsilon"]),
            "–" if r["achieved_epsilon"] is None else f"{r['achieved_epsilon']:.3f}",
            "–" if r["delta"] is None else f"{r['delta']:.1e}",
            f"{r['lr']:g}",
            pm(r["metric_mean"], r["metric_sd"]),
            pts(r["metric_mean"] - base),
            pm(r["accuracy_mean"], r["accuracy_sd"]),
        ]
        for r in rows_in
    ]
    header = ["target ε", "achieved ε (max site)", "δ (max site)", "lr", "test AUC mean ± sd", "vs no DP"]
    return table([*header, "accuracy"], "rrrrrrr", rows)


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


# --------------------------------------------------------------------------- encryption


def _he_poc(results: Path, name: str) -> str:
    poc = load(results, name)["poc"]
    labels = {
        "plain": "clear twin",
        "he": "heart_he (all layers)",
        "he_selective": 'heart_he, `encrypt_layers: ["net.weight"]`',
    }
    rows = []
    for key, label in labels.items():
        r = poc[key]
        enc = (
            "-"
            if "encryption_s" not in r
            else f"{r['encryption_s'] * 1e3:.1f} / {r['decryption_s'] * 1e3:.1f} ms"
        )
        rows.append(
            [
                label,
                ", ".join(r["encrypted_layers"]) or "none",
                f"{r['round_time_s']:.2f}",
                nbytes(r["bytes_per_site_per_round"]),
                f4(r["global_auc"]),
                f4(r["global_accuracy"]),
                enc,
            ]
        )
    header = [
        "job (10 rounds, 4 sites)",
        "encrypted layers",
        "s per round (median)",
        "bytes per site per round",
    ]
    header += ["final AUC", "final accuracy", "encrypt / decrypt at a site"]
    return table(header, "llrrrrr", rows)


def he_poc(results: Path) -> str:
    return _he_poc(results, "bench_he.json")


def he_poc_quiet(results: Path) -> str:
    return _he_poc(results, "bench_he_quiet.json")


def he_sweep(results: Path) -> str:
    sweep = load(results, "bench_he.json")["size_sweep"]
    rows = [
        [
            f"{r['parameters']:,}",
            f"{r['encrypted_fraction']:.0%}",
            f"{r['encrypt_s_per_site']:.3f} s",
            f"{r['aggregate_s_server']:.3f} s",
            f"{r['aggregate_s_server_clear'] * 1e3:.1f} ms",
            f"{r['decrypt_s_site']:.3f} s",
            nbytes(r["bytes_per_site"]),
            nbytes(r["bytes_per_site_clear"]),
            f"{r['bytes_ratio']:.0f}×",
            f"{r['max_abs_error_vs_float64']:.1e}",
        ]
        for r in sweep
    ]
    header = ["parameters", "encrypted", "encrypt / site", "aggregate at server (4 sites)", "clear aggregate"]
    header += ["decrypt / site", "bytes per site", "clear", "ratio", "max abs error"]
    return table(header, "rrrrrrrrrr", rows)


# --------------------------------------------------------------------------- compression


COMPRESSION_LABELS = {
    "none": "none (float32)",
    "fp16": "fp16",
    "int8": "int8",
    "int4": "int4",
    "topk_10pct_ef": "top-k 10% + error feedback",
    "topk_10pct": "top-k 10%, no feedback",
    "topk_1pct_ef": "top-k 1% + error feedback",
    "topk_1pct": "top-k 1%, no feedback",
    "topk_0.1pct_ef": "top-k 0.1% + error feedback",
    "topk_0.1pct": "top-k 0.1%, no feedback",
}


def _compression(results: Path, suffix: str, first: str) -> str:
    modes = load(results, "bench_compression.json")["modes"]
    rows = []
    for key, m in modes.items():
        if not key.endswith(suffix):
            continue
        rows.append(
            [
                COMPRESSION_LABELS[m["mode"]],
                f"{m['bytes_per_round_per_site']:,.0f}",
                ratio(m["bytes_ratio"]),
                f4(m["auc"]),
                "" if m["mode"] == "none" else pts(m["metric_delta"], 2),
            ]
        )
    return table([first, "bytes per site per round", "fewer bytes", "test AUC", "vs none"], "lrrrr", rows)


def compression(results: Path) -> str:
    return _compression(results, "@E1R40", "mode (E = 1, 40 rounds)")


def compression_periodic(results: Path) -> str:
    return _compression(results, "@E5R8", "mode (E = 5, 8 rounds)")


def compression_short(results: Path) -> str:
    return _compression(results, "@E1R10", "mode (E = 1, 10 rounds)")


def compression_heart(results: Path) -> str:
    heart = load(results, "bench_compression.json")["heart"]
    rows = []
    for key, m in heart.items():
        model, mode = key.split("/")
        rows.append(
            [
                model,
                COMPRESSION_LABELS[mode],
                f"{m['bytes_per_round_per_site']:,.0f}",
                ratio(m["bytes_ratio"]),
                pm(m["client_avg_accuracy"], m["client_avg_accuracy_sd"]),
            ]
        )
    header = ["model", "mode", "bytes per site per round", "fewer bytes than FLARE's dense message"]
    return table([*header, "client-avg accuracy"], "llrrr", rows)


# --------------------------------------------------------------------------- non-IID

NONIID_HEART_ROWS = {
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
    "scaffold": "SCAFFOLD",
    "fedavg_at_scaffold_settings": "FedAvg at SCAFFOLD's settings (ablation)",
    "fedadam": "FedAdam",
    "fedyogi": "FedYogi",
    "ditto": "Ditto, personal models",
    "ditto_global": "Ditto, its global model",
    "finetuned": "FedProx + fine-tuning (each hospital's CV choice)",
    "clustered_updates": "Clustered, by update similarity",
    "clustered_metadata": "Clustered, by region (metadata)",
    "best_by_site_cv": "Each hospital's pick by its own CV",
}


def noniid_heart(results: Path) -> str:
    heart = load(results, "bench_noniid.json")["datasets"]["heart"]
    best = heart["aims"].get("best_by_cv_loss")
    rows = []
    for key, label in NONIID_HEART_ROWS.items():
        m = heart["methods"][key]
        rows.append(
            [
                f"{label} **(best by CV)**" if key == best else label,
                pm(m["client_avg"], m["client_avg_sd"]),
                f"{f3(m['worst_site'])} {m['worst_site_name']}",
                *(f3(m["per_site"][s]) for s in HEART_SITES),
            ]
        )
    header = ["method", "client-avg ± sd", "worst hospital", *(site_label(s) for s in HEART_SITES)]
    return table(header, "lrlrrrr", rows)


NONIID_CXR_ROWS = {
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
    "scaffold": "SCAFFOLD",
    "fedadam": "FedAdam",
    "fedyogi": "FedYogi",
    "ditto": "Ditto, personal models",
    "finetuned": "FedAvg + fine-tuning",
    "clustered_updates": "Clustered, by update similarity",
}


def _noniid_cxr(results: Path, alpha: str) -> str:
    data = load(results, "bench_noniid.json")["datasets"][f"pneumoniamnist_alpha{alpha}"]
    sites = [s["site"] for s in data["sites"]]
    rows = []
    for key, label in NONIID_CXR_ROWS.items():
        m = data["methods"][key]
        cells = []
        for site in sites:
            s = m["per_site"][site]
            cells.append(
                f"{f3(s['accuracy'])}" if s["auc"] is None else f"{f3(s['auc'])} / {f3(s['accuracy'])}"
            )
        rows.append(
            [
                label,
                pm(m["client_avg"], m["client_avg_sd"]),
                f3(m["client_avg_accuracy"]),
                f"{f3(m['worst_site'])} {m['worst_site_name']}",
                *cells,
            ]
        )
    header = [f"α = {alpha} method", "client-avg AUC ± sd", "client-avg acc", "worst-site AUC"]
    header += [f"{s} AUC / acc" for s in sites]
    return table(header, "lrrl" + "r" * len(sites), rows)


def noniid_cxr_01(results: Path) -> str:
    return _noniid_cxr(results, "0.1")


def noniid_cxr_10(results: Path) -> str:
    return _noniid_cxr(results, "1.0")


def noniid_cxr_sites(results: Path) -> str:
    datasets = load(results, "bench_noniid.json")["datasets"]
    rows = []
    for alpha in ("0.1", "1.0"):
        for s in datasets[f"pneumoniamnist_alpha{alpha}"]["sites"]:
            rows.append(
                [alpha, s["site"], s["n_train"], s["n_val"], s["n_test"], f"{s['pneumonia_share']:.1%}"]
            )
    return table(["α", "site", "train", "val", "test", "pneumonia share"], "llrrrr", rows)


# --------------------------------------------------------------------------- imaging

CXR_LABELS = {
    "centralized": "centralized (pooled data)",
    "local": "local-only (mean of 4 site models)",
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
}


def _cxr_rows(data: dict) -> list[list[object]]:
    rows = []
    for key, m in data["methods"].items():
        sites = list(m["per_site"])
        if key == "local":
            chosen = "/".join(str(m["per_site"][s]["best_epoch"]) for s in sites)
        else:
            chosen = m.get("best_epoch", m.get("best_round"))
        label = CXR_LABELS[key] + (f" (mu {m['mu']:g})" if key == "fedprox" else "")
        rows.append(
            [
                label,
                f4(m["auc"]),
                f3(m["accuracy"]),
                *(f3(m["per_site"][s]["auc"]) for s in sites),
                chosen,
                f"{m['train_images_per_s']:,.0f}",
            ]
        )
    return rows


def cxr(results: Path) -> str:
    data = load(results, "bench_cxr.json")
    sites = list(data["dataset"]["sites"])
    header = ["method", "test AUC (pooled)", "accuracy", *(f"{s} AUC" for s in sites)]
    header += ["chosen epoch/round", "train images/s"]
    return table(header, "lrr" + "r" * len(sites) + "rr", _cxr_rows(data))


def cxr_sites(results: Path) -> str:
    sites = load(results, "bench_cxr.json")["dataset"]["sites"]
    rows = []
    for name, s in sites.items():
        c = s["counts"]
        rows.append(
            [
                name,
                c["train"]["n"],
                c["val"]["n"],
                c["test"]["n"],
                c["train"]["per_class"][1],
                c["test"]["per_class"][1],
            ]
        )
    return table(["site", "train", "val", "test", "pneumonia in train", "pneumonia in test"], "lrrrrr", rows)


def cxr_fedavg40(results: Path) -> str:
    data = load(results, "bench_cxr_fedavg40.json")
    base = load(results, "bench_cxr.json")["methods"]["centralized"]["auc"]
    m = data["methods"]["fedavg"]
    rows = [["FedAvg, 40 rounds", f4(m["auc"]), f3(m["accuracy"]), m["best_round"], f"{m['auc'] / base:.3f}"]]
    return table(
        ["method", "test AUC (pooled)", "accuracy", "chosen round", "× centralized AUC"], "lrrrr", rows
    )


def cxr_decode(results: Path) -> str:
    decode = load(results, "bench_cxr.json")["decode"]
    rows = [
        [k, f"{v['images']:,}", f"{v['seconds']:.1f}", f"{v['images_per_s']:.0f}"] for k, v in decode.items()
    ]
    return table(["decode path", "images", "seconds", "images/s"], "lrrr", rows)


# --------------------------------------------------------------------------- scale

SCALE_MODELS = {"heart_logreg_15": "15", "mlp_10k": "10k", "mlp_1m": "1M", "mlp_10m": "10M"}


def scale_poc(results: Path) -> str:
    poc = load(results, "bench_scale.json")["poc"]
    rows = []
    for model, r in poc.items():
        fast, stock = r["fast"], r["stock"]
        rows.append(
            [
                model,
                SCALE_MODELS.get(model, ""),
                f"{fast['round_s']:.2f}",
                f"**{fast['overhead_s']:.2f}**",
                f"{stock['overhead_s']:.2f}",
                f"{fast['first_round_s']:.2f}",
                f"{fast['submit_to_first_round_s']:.2f}",
                f"{fast['load_avg'][0]:.1f}",
            ]
        )
    header = ["model", "parameters", "round (shipped)", "overhead (shipped)", "overhead (stock FLARE)"]
    header += ["first round (shipped)", "submit → first round", "load avg"]
    return table(header, "lrrrrrrr", rows)


def _sim_row(r: dict) -> list[object]:
    return [
        f"{r['round_s']:.2f}",
        f"{1 / r['round_s']:.2f}",
        f"{r['overhead_s']:.2f}",
        f"{r['first_round_s']:.2f}",
        f"{r['peak_mem_gb']:.2f}",
        f"{r['load_avg'][0]:.1f}",
    ]


def scale_sites(results: Path) -> str:
    sims = load(results, "bench_scale.json")["simulation"]
    rows = [[r["sites"], *_sim_row(r)] for r in sims]
    header = ["sites", "s / round", "rounds / s", "overhead s", "first round s", "peak memory GB", "load avg"]
    return table(header, "rrrrrrr", rows)


def scale_models(results: Path) -> str:
    sims = load(results, "bench_scale.json")["simulation_models"]
    rows = [[r["model"], r["sites"], *_sim_row(r)] for r in sims]
    header = ["model", "sites", "s / round", "rounds / s", "overhead s", "first round s", "peak memory GB"]
    return table([*header, "load avg"], "lrrrrrrr", rows)


def scale_stock(results: Path) -> str:
    r = load(results, "bench_scale.json")["stock_simulator"]
    rows = [[r["sites"], r["rounds"], f"{r['round_s']:.1f}", f"{r['wall_s']:.0f}", f"{r['peak_mem_gb']:.2f}"]]
    header = ["sites", "rounds", "s for the round", "s in all", "largest process GB"]
    return table(header, "rrrrr", rows)


def scale_quiet(results: Path) -> str:
    data = load(results, "bench_scale_quiet.json")
    rows = []
    for model, r in data["poc"].items():
        fast, stock = r["fast"], r["stock"]
        rows.append(
            [
                f"{model} ({SCALE_MODELS.get(model, '?')} weights)",
                f"{fast['round_s']:.2f} s",
                f"**{fast['overhead_s']:.2f} s**",
                f"{stock['round_s']:.2f} s",
                f"{stock['overhead_s']:.2f} s",
            ]
        )
    for r in data["simulation"]:
        rows.append(
            [f"simulation, {r['sites']} sites", f"{r['round_s']:.2f} s", f"{r['overhead_s']:.2f} s", "", ""]
        )
    return table(
        ["POC", "round, shipped", "overhead, shipped", "round, stock", "overhead, stock"], "lrrrr", rows
    )


def scale_hardware(results: Path) -> str:
    data = load(results, "bench_scale.json")
    hw = data["hardware"]
    start = ", ".join(f"{x:.1f}" for x in data["load_avg_start"])
    return (
        f"Hardware: {hw['cores']} cores {hw['cpu']}, {hw['memory_gb']} GB RAM, Python {hw['python']}; "
        f"load average at start {start}."
    )


# --------------------------------------------------------------------------- registry

TABLES: dict[str, Callable[[Path], str]] = {
    "heart-bench": heart_bench,
    "heart-per-site": heart_per_site,
    "heart-jobs": heart_jobs,
    "heart-jobs-setup": heart_jobs_setup,
    "faults": faults,
    "robust-rules": robust_rules,
    "privacy-utility": privacy_utility,
    "privacy-utility-cxr": privacy_utility_cxr,
    "dp-cost": dp_cost,
    "strict-scope": strict_scope,
    "he-poc": he_poc,
    "he-poc-quiet": he_poc_quiet,
    "he-sweep": he_sweep,
    "compression": compression,
    "compression-periodic": compression_periodic,
    "compression-short": compression_short,
    "compression-heart": compression_heart,
    "noniid-heart": noniid_heart,
    "noniid-cxr-sites": noniid_cxr_sites,
    "noniid-cxr-0.1": noniid_cxr_01,
    "noniid-cxr-1.0": noniid_cxr_10,
    "cxr": cxr,
    "cxr-sites": cxr_sites,
    "cxr-fedavg40": cxr_fedavg40,
    "cxr-decode": cxr_decode,
    "scale-poc": scale_poc,
    "scale-sites": scale_sites,
    "scale-models": scale_models,
    "scale-stock": scale_stock,
    "scale-quiet": scale_quiet,
    "scale-hardware": scale_hardware,
}
BEGIN = re.compile(r"^<!-- BEGIN GENERATED: ([a-z0-9.-]+) -->$")


def fill(text: str, results: Path, *, where: str = "<text>") -> str:
    """``text`` with every marked block rewritten from ``results``; errors name ``where`` and the line."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        match = BEGIN.match(line.strip())
        i += 1
        if not match:
            continue
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(
                f"{where}:{i}: unknown generated table {name!r} (known: {', '.join(sorted(TABLES))})"
            )
        end = next((j for j in range(i, len(lines)) if lines[j].strip() == END), None)
        if end is None:
            raise ValueError(f"{where}:{i}: table {name!r} has no '{END}' line")
        out += [NOTE, "", TABLES[name](results), "", END]
        i = end + 1
    return "\n".join(out)


def pages(docs: Path) -> list[Path]:
    return sorted(p for p in docs.rglob("*.md") if p.is_file())


def stale(docs: Path, results: Path) -> list[str]:
    """What ``make docs-tables`` would change: page paths and plot copies, relative to ``docs``."""
    found = [
        str(p.relative_to(docs))
        for p in pages(docs)
        if fill(p.read_text(), results, where=str(p)) != p.read_text()
    ]
    for src, dest in ASSETS:
        target = docs / dest
        if not target.is_file() or target.read_bytes() != (results / src).read_bytes():
            found.append(dest)
    return found


def write(docs: Path, results: Path) -> list[str]:
    changed = stale(docs, results)
    for page in pages(docs):
        page.write_text(fill(page.read_text(), results, where=str(page)))
    for src, dest in ASSETS:
        (docs / dest).parent.mkdir(parents=True, exist_ok=True)
        (docs / dest).write_bytes((results / src).read_bytes())
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    args = parser.parse_args(argv)
    if args.check:
        found = stale(args.docs, args.results)
        for name in found:
            print(f"stale: docs/{name} (run `make docs-tables`)", file=sys.stderr)
        return 1 if found else 0
    for name in write(args.docs, args.results):
        print(f"updated docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
