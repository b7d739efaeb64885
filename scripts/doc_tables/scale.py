"""Speed and scale tables: `make bench-scale` (POC round overhead, simulated sites)."""

from __future__ import annotations

from pathlib import Path

from doc_tables.fmt import load, table

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
