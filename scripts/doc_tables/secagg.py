"""Secure aggregation tables: `make bench-secagg` (SecAgg+ against plain FedAvg, HE and Flower's SecAgg+)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import load, nbytes, ratio, table

NAME = "bench_secagg.json"
MODES = ("plain", "secagg", "he", "flower_secaggplus")
JOB_BITS = 40  # the ring width of the SecAgg+ jobs; the other widths are compared at 100k


def _rows(results: Path, runner: str) -> list[dict]:
    return [
        r
        for r in load(results, NAME)["rows"]
        if r.get("runner") == runner and r.get("bits", JOB_BITS) == JOB_BITS
    ]


def _find(rows: list[dict], mode: str, d: int, n: int, k: int = 0) -> dict | None:
    return next(
        (r for r in rows if (r["mode"], r["params"], r["sites"], r["dropouts"]) == (mode, d, n, k)), None
    )


def _err(x: float | None) -> str:
    return "–" if x is None else f"{x:.1e}"


def secagg_poc(results: Path) -> str:
    """Round time in POC (4 sites): the heart job in clear, under SecAgg+, under HE, at three model sizes."""
    rows = _rows(results, "poc")
    out = []
    for d in sorted({r["params"] for r in rows}):
        plain, sec, he = (_find(rows, m, d, 4) for m in ("plain", "secagg", "he"))
        if not (plain and sec and he):
            continue
        out.append(
            [
                f"{d:,}",
                f"{plain['round_s']:.2f}",
                f"{sec['round_s']:.2f} ({ratio(sec['round_s'] / plain['round_s'], 2)})",
                f"{he['round_s']:.2f} ({ratio(he['round_s'] / plain['round_s'], 2)})",
            ]
        )
    header = ["parameters", "plain FedAvg s/round", "SecAgg+ s/round (× plain)", "HE s/round (× plain)"]
    return table(header, "rrrr", out)


def secagg_inprocess(results: Path) -> str:
    """Per configuration: seconds of all parties' work and bytes per site in a round, and the error."""
    rows = _rows(results, "inprocess")
    out = []
    keys = sorted({(r["params"], r["sites"], r["dropouts"]) for r in rows if r["mode"] == "secagg"})
    for d, n, k in keys:
        cells = [f"{d:,}", str(n), str(k)]
        for mode in MODES:
            r = _find(rows, mode, d, n, k)
            cells.append("–" if r is None else f"{r['round_s']:.3f} s, {nbytes(r['bytes_per_site'])}")
        sec, flower = _find(rows, "secagg", d, n, k), _find(rows, "flower_secaggplus", d, n, k)
        cells += [_err(sec["max_rel_error"]), _err(flower["max_rel_error"]) if flower else "–"]
        out.append(cells)
    header = [
        "parameters",
        "sites",
        "dropouts",
        "plain",
        "SecAgg+ (kit)",
        "HE",
        "Flower SecAgg+",
        "kit rel. error",
        "Flower rel. error",
    ]
    return table(header, "rrrrrrrrr", out)


def secagg_aims(results: Path) -> str:
    """The issue's aims, each against the row that measures it."""
    data = load(results, NAME)["rows"]
    poc, inproc = _rows(results, "poc"), _rows(results, "inprocess")
    out = []
    p, s = _find(poc, "plain", 99_991, 4), _find(poc, "secagg", 99_991, 4)
    if p and s:
        x = s["round_s"] / p["round_s"]
        out.append(
            ["round time ≤ 1.5× plain, 100k, 4 sites (POC)", ratio(x, 2), "met" if x <= 1.5 else "missed"]
        )
    p, s = _find(inproc, "plain", 100_000, 4), _find(inproc, "secagg", 100_000, 4)
    if p and s:
        x = s["bytes_per_site"] / p["bytes_per_site"]
        out.append(
            [
                "bytes ≤ 1.2× plain (steady round; keys: once an epoch)",
                ratio(x, 2),
                "met" if x <= 1.2 else "missed",
            ]
        )
    errs = [r["max_rel_error"] for r in inproc if r["mode"] == "secagg"]
    worst = max(errs) if errs else float("nan")
    out.append(
        [
            f"aggregate = plain FedAvg within 1e-6 relative ({JOB_BITS}-bit ring, every row)",
            _err(worst),
            "met" if worst <= 1e-6 else "missed",
        ]
    )
    for bits in (32, 64):
        other = [r for r in data if r["mode"] == "secagg" and r.get("bits") == bits]
        for r in other:
            p = _find(inproc, "plain", r["params"], r["sites"])
            size = f", bytes {ratio(r['bytes_per_site'] / p['bytes_per_site'], 2)} plain" if p else ""
            out.append(
                [
                    f"… {bits}-bit ring, {r['params']:,} params, {r['sites']} sites",
                    _err(r["max_rel_error"]) + size,
                    "met" if r["max_rel_error"] <= 1e-6 else "missed",
                ]
            )
    slower = []
    for r in inproc:
        f = (
            _find(inproc, "flower_secaggplus", r["params"], r["sites"], r["dropouts"])
            if r["mode"] == "secagg"
            else None
        )
        if f:
            slower.append(r["round_s"] / f["round_s"])
    if slower:
        out.append(
            [
                "not slower than Flower's SecAgg+ (same sizes, in process)",
                f"{ratio(min(slower), 2)} to {ratio(max(slower), 2)}",
                "met" if max(slower) <= 1.0 else "missed",
            ]
        )
    return table(["aim", "measured", ""], "lrl", out)
