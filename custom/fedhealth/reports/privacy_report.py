"""The privacy section of a run report: ε per site per round, the final (ε, δ), and who stopped.

Built from the run record: each site's train result carries its ledger entry (``privacy`` in the
site metrics) and a site that declined a round past its budget appears in ``failures`` with a
reason that opens with :data:`fedhealth.constants.DP_DECLINED`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fedhealth.constants import DP_DECLINED, M_PRIVACY  # noqa: E402
from fedhealth.reports.run_record import RunRecord


def privacy_section(record: RunRecord) -> dict | None:
    """``{"rounds", "epsilon": {site: [ε or None per round]}, "final": {site: {...}}, "stopped": [...]}``.

    ``None`` when no site reported a ledger (a job without DP).
    """
    rounds = sorted(record.get("rounds", []), key=lambda r: r.get("round", 0))
    ledgers = {
        (r.get("round"), site): m[M_PRIVACY]
        for r in rounds
        for site, m in r.get("sites", {}).items()
        if isinstance(m.get(M_PRIVACY), dict)
    }
    if not ledgers:
        return None
    sites = sorted({site for _, site in ledgers})
    numbers = [r.get("round") for r in rounds]
    epsilon = {s: [ledgers.get((n, s), {}).get("epsilon") for n in numbers] for s in sites}
    final = {}
    for site in sites:
        last = [ledgers[(n, site)] for n in numbers if (n, site) in ledgers][-1]
        final[site] = {
            k: last[k] for k in ("epsilon", "delta", "noise_multiplier", "max_grad_norm", "sample_rate")
        }
        final[site]["rounds_trained"] = sum((n, site) in ledgers for n in numbers)
    stopped, seen = [], set()
    for failure in record.get("failures", []):
        reason = failure.get("reason") or ""
        if DP_DECLINED in reason and failure.get("site") not in seen:
            seen.add(failure.get("site"))
            stopped.append({"site": failure.get("site"), "round": failure.get("round"), "reason": reason})
    return {"rounds": numbers, "epsilon": epsilon, "final": final, "stopped": stopped}


def fmt(value: float | None, spec: str = ".2f") -> str:
    """A number for a report table; ``–`` where there is none."""
    return "–" if value is None else format(value, spec)


def privacy_markdown(section: dict | None) -> str:
    """The ε table (sites × rounds), the final (ε, δ) per site and the sites that stopped."""
    if not section:
        return ""
    sites = sorted(section["epsilon"])
    lines = ["## Differential privacy (DP-SGD at each site)", "", "Final guarantee per site:", ""]
    lines += [
        "| site | ε | δ | noise σ | clip C | sample rate | rounds trained |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for site in sites:
        f = section["final"][site]
        lines.append(
            f"| {site} | {fmt(f['epsilon'], '.3f')} | {f['delta']:.2g} | "
            f"{fmt(f['noise_multiplier'], '.3f')} | {f['max_grad_norm']:g} | "
            f"{f['sample_rate']:.3f} | {f['rounds_trained']} |"
        )
    lines += ["", "ε spent so far, per round (– : the site sent no update):", ""]
    lines += ["| round | " + " | ".join(sites) + " |", "|---:|" + "---:|" * len(sites)]
    for i, number in enumerate(section["rounds"]):
        lines.append(f"| {number} | " + " | ".join(fmt(section["epsilon"][s][i]) for s in sites) + " |")
    lines += ["", "![epsilon per site per round](privacy.png)", ""]
    if section["stopped"]:
        lines += ["Sites that stopped at their privacy budget:", ""]
        lines += [f"- {s['site']} declined round {s['round']}: {s['reason']}" for s in section["stopped"]]
    else:
        lines.append("No site reached its privacy budget.")
    return "\n".join(lines) + "\n"


def plot_privacy(section: dict, path: Path) -> Path:
    """ε spent per site over rounds; a cross where a site stopped at its budget."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    stopped = {s["site"]: s["round"] for s in section["stopped"]}
    for site, values in sorted(section["epsilon"].items()):
        xs = [n for n, v in zip(section["rounds"], values, strict=True) if v is not None]
        ys = [v for v in values if v is not None]
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=site)
        if site in stopped and ys:
            ax.plot([stopped[site]], [ys[-1]], marker="x", markersize=10, color=line.get_color())
    ax.set_xlabel("round")
    ax.set_ylabel("ε spent so far")
    ax.set_title("privacy spent per site (x: declined at its budget)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
