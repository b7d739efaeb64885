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
from fedhealth.reports.attack_figures import describe  # noqa: E402
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


ATTACK_HEADING = "### Measured attacks for this job's settings"
_ATTACK_COLUMNS = {
    "cxr": (("ssim_mean", "SSIM", ".2f"), ("psnr_mean", "PSNR (dB)", ".1f")),
    "heart": (("recovered_fraction", "feature values recovered", ".2f"), ("exact_rows", "exact rows", ".2f")),
}
_ATTACK_MEANING = {
    "cxr": "SSIM 1: the server reconstructs the training images; near 0: it recovers nothing like them.",
    "heart": (
        "feature values recovered: the share of a patient's feature values the server recovers within "
        "the audit's tolerance; exact rows: the share of attacks that recover a training row exactly."
    ),
}


def _settings_line(settings: dict) -> str:
    steps = (
        f"{settings['local_steps']} local steps" if settings["local_steps"] is not None else "local steps ?"
    )
    if settings.get("steps_site"):
        steps += f" (the fewest a site took in a round: {settings['steps_site']})"
    batch = settings["batch"] if settings["batch"] is not None else "? (no job config in the result)"
    data = settings["data"] + (
        f" (this job's data: {settings['dataset']})" if settings.get("dataset") else ""
    )
    return (
        f"This job (settings from {settings['source']}): {data} data, batch {batch}, {steps}, "
        f"optimizer {settings['optimizer'] or '?'}."
    )


def _epsilon_line(run_epsilon: dict | None) -> str:
    if not run_epsilon:
        return "ε of this run: none (no site reported a DP-SGD or DPUpdate ledger in the run record)."
    return (
        f"ε of this run: {run_epsilon['epsilon']:.3f} at δ {run_epsilon['delta']:.2g} "
        f"({run_epsilon['source']}, the largest over sites)."
    )


def _membership(rows: list[dict]) -> str:
    return ", ".join(f"{m['attack']} {m['auc']:.2f}" for m in rows) if rows else "–"


def attack_markdown(section: dict | None, *, under_dp: bool = False) -> str:
    """The measured-attacks subsection: audited figures for the job's settings, the floor, ε of the run.

    ``under_dp``: the report has a DP section, which this subsection follows; otherwise it opens a
    ``## Privacy`` section of its own.
    """
    if not section:
        return ""
    lines = ([] if under_dp else ["## Privacy", ""]) + [ATTACK_HEADING, ""]
    if not section["available"]:
        lines += [section["message"], "", _epsilon_line(section.get("run_epsilon"))]
        return "\n".join(lines + section["settings"]["notes"]) + "\n"
    settings = section["settings"]
    columns = _ATTACK_COLUMNS[settings["data"]]
    lines += [_settings_line(settings), "", _epsilon_line(section.get("run_epsilon")), ""]
    lines += [
        "| this job's protection | audited setting | exact | "
        + " | ".join(c[1] for c in columns)
        + " | membership AUC |",
        "|---|---|---|" + "---:|" * len(columns) + "---|",
    ]
    rows = [
        (m["job_protection"], m["row"], "yes" if m["exact"] else "no", m["membership"])
        for m in section["matches"]
    ]
    floor = section["floor"]
    if floor["row"] is not None:
        rows.append((f"site floor (batch {floor['min_batch_size']})", floor["row"], "–", []))
    for words, row, exact, membership in rows:
        if row is None:
            lines.append(
                f"| {words} | not audited | – | " + "– | " * len(columns) + f"{_membership(membership)} |"
            )
            continue
        where = describe(row["batch"], row["local_steps"], row["optimizer"], row["protection"])
        values = " | ".join(fmt(row.get(key), spec) for key, _, spec in columns)
        lines.append(f"| {words} | {where} | {exact} | {values} | {_membership(membership)} |")
    lines += [""] + [f"- {m['sentence']}" for m in section["matches"]] + [f"- {floor['sentence']}"]
    lines += [f"- {note}" for note in settings["notes"]]
    lines += [
        "",
        _ATTACK_MEANING[settings["data"]] + " Membership AUC 0.5: chance (loss_threshold: Yeom et al. 2018; "
        "lira: Carlini et al. 2022).",
        f"Source: `{section['audit']}`" + (f" (`{section['command']}`)." if section.get("command") else "."),
    ]
    return "\n".join(lines) + "\n"
