"""Reliability tables: `make bench-faults` (fault drills, robust rules)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import f3, load, pm, table


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


FEDBUFF_LABELS = {
    "fedavg_waits": "FedAvg, waits for VA every round (25 rounds)",
    "fedavg_without_slow": "FedAvg without VA (25 rounds)",
    "fedbuff_k3_a0.5": "FedBuff K=3, a=0.5 (35 versions; heart_fedbuff)",
    "fedbuff_k3_a0": "FedBuff K=3, no staleness weighting (35 versions)",
    "fedbuff_k2_a0.5": "FedBuff K=2, a=0.5 (50 versions)",
}


def fedbuff(results: Path) -> str:
    data = load(results, "bench_fedbuff.json")
    rows = []
    for key, row in data["rows"].items():
        _, _, name = key.partition("_")
        share = row["slow_site_share"]
        stale = row.get("slow_site_mean_staleness")
        rows.append(
            [
                f"{row['slow_factor']:g}×",
                FEDBUFF_LABELS.get(name, name),
                pm(row["client_avg"], row["client_avg_sd"]),
                f3(row["per_site"][data["slow_site"]]),
                f"{row['sim_time']:.0f}",
                f"{share:.0%}",
                "–" if stale is None else f"{stale:.1f}",
            ]
        )
    header = ["VA slower by", "method (in-process, 5 seeds)", "client-avg accuracy", "VA accuracy"]
    header += ["time (fast tasks)", "VA's share of updates", "VA's mean staleness"]
    return table(header, "llrrrrr", rows)
