"""Chest X-ray tables: `make bench-cxr` (methods, sites, 40 rounds, decoding)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f3, f4, load, table

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
