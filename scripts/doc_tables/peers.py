"""Side-by-side table: `make bench-peers` (the kit against the same federations in Flower 1.42)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import load, table

NAME = "bench_peers.json"


def _value(x: float | None, unit: str) -> str:
    if x is None:
        return "–"
    if unit in ("accuracy", "AUC"):
        return f"{x:.3f}"
    if unit == "bytes":
        return f"{x / 1e3:,.1f} kB" if x < 1e6 else f"{x / 1e6:,.2f} MB"
    if unit == "MB":
        return f"{x:,.0f} MB"
    return f"{x:,.2f} s" if x < 100 else f"{x:,.0f} s"


def verdict(row: dict) -> str:
    """At or ahead of Flower, agreeing within the stated tolerance, or behind by how much."""
    kit, flower = row.get("fedhealth"), row.get("flower")
    if kit is None or flower is None:
        return "not measured"
    tolerance = row.get("tolerance")
    if tolerance is not None and abs(kit - flower) <= tolerance:
        return f"agree: differ by {abs(kit - flower):.3f} ≤ {tolerance:.3f}"
    ahead = kit >= flower if row["better"] == "higher" else kit <= flower
    if ahead:
        return "at or ahead"
    gap = abs(kit - flower)
    if row["unit"] in ("accuracy", "AUC"):
        return f"behind by {gap:.3f}"
    return f"behind by {_value(gap, row['unit'])} ({kit / flower:.2f}×)" if flower else "behind"


def peers_rows(results: Path) -> str:
    """Every metric: unit, which way is better, the kit, Flower, kit/Flower and the verdict."""
    rows = []
    for r in load(results, NAME)["rows"]:
        kit, flower = r.get("fedhealth"), r.get("flower")
        rows.append(
            [
                r["metric"],
                r["better"],
                _value(kit, r["unit"]),
                _value(flower, r["unit"]),
                f"{kit / flower:.2f}×" if kit is not None and flower else "–",
                verdict(r),
            ]
        )
    header = ["metric", "better", "fedhealth (FLARE)", "Flower 1.42", "kit / Flower", "verdict"]
    return table(header, "llrrrl", rows)


def _load(values: list[float] | None) -> str:
    return "–" if not values else ", ".join(f"{v:.2f}" for v in values)


def peers_setup(results: Path) -> str:
    """How the run was made: machine, load, command, what each side ran."""
    data = load(results, NAME)
    hw = data.get("hardware", {})
    rows = [
        ["command", f"`{data.get('command', 'make bench-peers')}`"],
        ["machine", f"{hw.get('cpu', '?')}, {hw.get('cores', '?')} cores, {hw.get('memory_gb', '?')} GB"],
        [
            "load average (1, 5, 15 min) at start / end",
            f"{_load(data.get('load_avg_start'))} / {_load(data.get('load_avg_end'))}",
        ],
        ["run time", f"{data.get('seconds', 0):,.0f} s"],
    ]
    rows += [[k, v] for k, v in data.get("setup", {}).items()]
    return table(["", ""], "ll", rows)
