"""The operating-point table: per site, sensitivity/specificity at 0.5 vs at the threshold chosen on val."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f3, load, table

# setting in results/bench_operating_point.json -> its label in the docs
LABELS = {
    "youden": "Youden (default, min 5 a class)",
    "youden_min2": "Youden, min 2 a class",
    "youden_platt_min2": "Youden + Platt, min 2",
    "target_sens_0.9_min2": "sensitivity ≥ 0.9, min 2",
}


def _pair(m: dict) -> str:
    return f"{f3(m['sensitivity'])} / {f3(m['specificity'])}"


def cxr_operating_point(results: Path) -> str:
    data = load(results, "bench_operating_point.json")
    rows = []
    for key, label in LABELS.items():
        for site, r in data["results"][key].items():
            how = f"{r['threshold']:.3f}" + (" (fallback)" if r["chosen_by"] == "fallback" else "")
            rows.append(
                [
                    label,
                    site,
                    f"{r['val']['n_pos']}/{r['val']['n_neg']}",
                    how,
                    _pair(r["val"]),
                    _pair(r["test_at_0_5"]),
                    _pair(r["test"]),
                    "yes" if r["half_failed"] else "no",
                ]
            )
    header = [
        "setting",
        "site",
        "val pos/neg",
        "threshold",
        "val sens / spec",
        "test at 0.5",
        "test at threshold",
    ]
    return table([*header, "0.5 would have failed"], "llrrrrrl", rows)
