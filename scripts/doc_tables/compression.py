"""Compression tables: `make bench-compression` (bytes against AUC, heart models) and `make
bench-topk-schedule` (top-k schedules, chosen on validation AUC)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f4, load, pm, pts, ratio, table

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
    "topk_1pct_ef_warm1": "top-k 1% + EF, 1 dense round first",
    "topk_1pct_ef_warm2": "top-k 1% + EF, 2 dense rounds first",
    "topk_1pct_ef_warm3": "top-k 1% + EF, 3 dense rounds first",
    "topk_10to1pct_ef_10r": "top-k 10% → 1% over 10 rounds + EF",
    "topk_10to1pct_ef_20r": "top-k 10% → 1% over 20 rounds + EF",
    "topk_1pct_ef_warm2_10to1pct_10r": "top-k 2 dense rounds, then 10% → 1% over 10 + EF",
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


def compression_schedule(results: Path) -> str:
    """Each top-k schedule against dense: validation and test AUC gaps (mean over seeds), bytes."""
    study = load(results, "bench_topk_schedule.json")
    rows = []
    for mode, m in study["summary"].items():
        if mode == "none":
            continue
        label = COMPRESSION_LABELS[mode] + (" **(chosen)**" if mode == study["chosen"] else "")
        rows.append(
            [
                label,
                pts(m["val_gap_pts"] / 100, 2),
                pts(m["test_gap_pts"] / 100, 2),
                " / ".join(pts(g / 100, 2).replace(" pts", "") for g in m["test_gap_pts_per_seed"]),
                f"{m['bytes_vs_dense']:.2%}",
                ratio(1 / m["bytes_vs_dense"]),
            ]
        )
    seeds = ", ".join(map(str, study["seeds"]))
    header = [
        "top-k setting (E = 1, 40 rounds)",
        "val AUC vs dense",
        "test AUC vs dense",
        f"test, seeds {seeds}",
        "bytes vs dense",
        "fewer bytes",
    ]
    return table(header, "lrrrrr", rows)
