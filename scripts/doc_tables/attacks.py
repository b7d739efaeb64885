"""The privacy-audit tables: reconstruction by batch, steps and protection; membership inference."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f3, load, table

FILE = "bench_privacy_attacks.json"
PROTECTION_LABELS = {
    "none": "none",
    "dp_eps1": "DP-SGD ε = 1",
    "dp_eps8": "DP-SGD ε = 8",
    "secure_sum4": "sum of 4 sites (HE / secure aggregation)",
    "topk1": "top-k 1 %",
}


def _order(rows: list[dict]) -> list[tuple[str, int, int]]:
    keys = {(r["protection"], r["batch"], r["local_steps"]) for r in rows}
    return sorted(keys, key=lambda k: (list(PROTECTION_LABELS).index(k[0]), k[1], k[2]))


def attacks_cxr(results: Path) -> str:
    """Per setting and job: mean SSIM of the reconstructions and the share re-identified among the site's
    training images, next to the SSIM a generic X-ray (the mean validation image) already scores."""
    rows = [r for r in load(results, FILE)["inversion"] if r["data"] == "cxr"]
    by = {(r["job"], r["protection"], r["batch"], r["local_steps"]): r for r in rows}
    jobs = sorted({r["job"] for r in rows}, key=lambda j: ("sgd" not in j, j))
    out = []
    for protection, batch, steps in _order(rows):
        cells = []
        for job in jobs:
            r = by.get((job, protection, batch, steps))
            cells.append("–" if r is None else f"{r['ssim_mean']:.2f} / {r['reidentified']:.0%}")
        base = next(by[(j, protection, batch, steps)] for j in jobs if (j, protection, batch, steps) in by)
        out.append([PROTECTION_LABELS[protection], batch, steps, *cells, f"{base['baseline_ssim']:.2f}"])
    labels = [f"{j}: SSIM / re-identified" for j in jobs]
    return table(
        ["protection", "batch", "local steps", *labels, "generic X-ray SSIM"],
        "lrr" + "r" * len(jobs) + "r",
        out,
    )


def attacks_heart(results: Path) -> str:
    """Share of a patient's features recovered and share of attacks that give a whole row, per setting."""
    rows = [r for r in load(results, FILE)["inversion"] if r["data"] == "heart"]
    by = {(r["protection"], r["batch"], r["local_steps"]): r for r in rows}
    out = [
        [PROTECTION_LABELS[p], b, s, f3(by[(p, b, s)]["recovered_fraction"]), f3(by[(p, b, s)]["exact_rows"])]
        for p, b, s in _order(rows)
    ]
    return table(["protection", "batch", "local steps", "features recovered", "exact rows"], "lrrrr", out)


def attacks_membership(results: Path) -> str:
    """Membership-inference AUC (and TPR at 1 % FPR) on the final model, per data, protection and attack."""
    rows = load(results, FILE)["membership"]
    out = []
    for r in sorted(
        rows, key=lambda r: (r["data"], list(PROTECTION_LABELS).index(r["protection"]), r["attack"])
    ):
        same = f" (the model of {r['same_model_as']})" if r.get("same_model_as") else ""
        attack = (
            "LiRA" + (f", {r['shadows']} shadows" if r.get("shadows") else "")
            if r["attack"] == "lira"
            else "loss threshold"
        )
        out.append(
            [
                r["data"],
                PROTECTION_LABELS[r["protection"]] + same,
                attack,
                f3(r["auc"]),
                f3(r.get("tpr_at_1pct_fpr")),
            ]
        )
    return table(["data", "protection", "attack", "AUC", "TPR at 1 % FPR"], "lllrr", out)
