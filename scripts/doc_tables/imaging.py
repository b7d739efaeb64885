"""Chest X-ray tables: `make bench-cxr` (methods, DenseNet-121, sites, 40 rounds, decoding)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f3, f4, load, table

CXR_LABELS = {
    "centralized": "centralized (pooled data)",
    "local": "local-only (mean of 4 site models)",
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
    "fedavg_e2": "FedAvg, 2 local epochs",
    "fedavg_e5": "FedAvg, 5 local epochs",
    "fedavgm": "FedAvgM (server momentum)",
    "fedadam": "FedAdam (server Adam)",
    "scaffold": "SCAFFOLD (SGD clients)",
}


def _label(key: str, m: dict, chosen: str | None) -> str:
    label = CXR_LABELS[key]
    mu = m.get("client", {}).get("mu", m.get("mu", 0.0))
    label += f" (mu {mu:g})" if key == "fedprox" else ""
    return f"**{label}** (chosen on val)" if key == chosen else label


def _budget(m: dict) -> str:
    """Epochs, or rounds × local epochs."""
    if "rounds" in m:
        return f"{m['rounds']} × {m['client']['local_epochs']}"
    return str(m.get("epochs", "–"))


def _ratio(m: dict) -> str:
    return f"{m['ratio']:.3f}" if "ratio" in m else "–"


def _cxr_rows(data: dict) -> list[list[object]]:
    rows = []
    chosen = data.get("selected", {}).get("method")
    for key, m in data["methods"].items():
        sites = list(m["per_site"])
        if key == "local":
            best = "/".join(str(m["per_site"][s]["best_epoch"]) for s in sites)
        else:
            best = m.get("best_epoch", m.get("best_round"))
        rows.append(
            [
                _label(key, m, chosen),
                _budget(m),
                f4(m.get("val_auc")),
                f4(m["auc"]),
                _ratio(m),
                f3(m["accuracy"]),
                *(f3(m["per_site"][s]["auc"]) for s in sites),
                best,
                f"{m['train_images_per_s']:,.0f}",
            ]
        )
    return rows


def cxr(results: Path) -> str:
    data = load(results, "bench_cxr.json")
    sites = list(data["dataset"]["sites"])
    header = ["method", "epochs or rounds × local epochs", "val AUC (pooled)", "test AUC (pooled)"]
    header += ["× centralized AUC", "accuracy", *(f"{s} AUC" for s in sites)]
    header += ["chosen epoch/round", "train images/s"]
    return table(header, "llrrrr" + "r" * len(sites) + "rr", _cxr_rows(data))


def cxr_densenet(results: Path) -> str:
    data = load(results, "bench_cxr.json")
    dense = data["densenet"]
    rows = [
        [
            CXR_LABELS[key],
            _budget(m),
            f4(m.get("val_auc")),
            f4(m["auc"]),
            _ratio(m),
            f3(m["accuracy"]),
            f"{m['train_images_per_s']:,.1f}",
            f"{m['seconds']:,.0f}",
        ]
        for key, m in dense["methods"].items()
    ]
    header = ["DenseNet-121, 64 px", "epochs or rounds × local epochs", "val AUC (pooled)"]
    header += ["test AUC (pooled)", "× centralized AUC", "accuracy", "train images/s", "seconds"]
    return table(header, "llrrrrrr", rows)


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
