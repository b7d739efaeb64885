"""Non-IID tables: `make bench-noniid` (heart) and `make bench-noniid-cxr` (PneumoniaMNIST)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import HEART_SITES, f3, load, pm, site_label, table

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
