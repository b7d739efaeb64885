"""The run report's section on sites whose privacy scope releases their update with DP (``DPUpdate``).

Built from the run record's ``update_privacy`` list: every release a site's scope stamped on a
result (train updates and, where a site allows it, ``submit_model``), with ε spent so far at δ, the
noise multiplier and standard deviation, the clip norm, the round and the task.
"""

from __future__ import annotations

from fedhealth.reports.privacy_report import fmt
from fedhealth.reports.run_record import RunRecord

FINAL_KEYS = ("epsilon", "delta", "noise_multiplier", "noise_std", "clip_norm", "releases")


def update_privacy_section(record: RunRecord) -> dict | None:
    """``{"rounds", "epsilon": {site: [ε after that round's train release, or None]}, "final": {site: {...}},
    "other": [releases of other tasks]}``; ``None`` when no site released with DP."""
    releases = [r for r in record.get("update_privacy", []) if isinstance(r, dict)]
    if not releases:
        return None
    sites = sorted({r.get("site") for r in releases})
    trained = {(r.get("round"), r.get("site")): r for r in releases if r.get("task") in ("train", "")}
    rounds = sorted({n for n, _ in trained if n is not None})
    epsilon = {s: [trained[(n, s)]["epsilon"] if (n, s) in trained else None for n in rounds] for s in sites}
    final = {}
    for site in sites:
        last = max((r for r in releases if r.get("site") == site), key=lambda r: r.get("releases", 0))
        final[site] = {k: last.get(k) for k in FINAL_KEYS}
    other = [
        {k: r.get(k) for k in ("site", "task", "round", "epsilon", "releases")}
        for r in releases
        if r.get("task") not in ("train", "")
    ]
    return {"rounds": rounds, "epsilon": epsilon, "final": final, "other": other}


def update_privacy_markdown(section: dict | None) -> str:
    """The final (ε, δ) per site, ε per round, and releases made for other tasks."""
    if not section:
        return ""
    sites = sorted(section["final"])
    lines = [
        "## Differential privacy of site updates (privacy scope `DPUpdate`)",
        "",
        "Each update clipped to L2 norm C and released with Gaussian noise of std 2·z·C (sensitivity 2C: "
        "any change to the site's data); ε from Opacus's RDP analysis over all releases.",
        "",
        "| site | ε | δ | noise multiplier z | noise std | clip C | releases |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for site in sites:
        f = section["final"][site]
        lines.append(
            f"| {site} | {fmt(f['epsilon'], '.3f')} | {f['delta']:.2g} | "
            f"{fmt(f['noise_multiplier'], '.3f')} | {fmt(f['noise_std'], '.3g')} | {f['clip_norm']:g} | "
            f"{f['releases']} |"
        )
    if section["rounds"]:
        lines += ["", "ε spent so far, per round (– : no release that round):", ""]
        lines += ["| round | " + " | ".join(sites) + " |", "|---:|" + "---:|" * len(sites)]
        for i, number in enumerate(section["rounds"]):
            lines.append(f"| {number} | " + " | ".join(fmt(section["epsilon"][s][i]) for s in sites) + " |")
    if section["other"]:
        lines += ["", "Releases for other tasks (counted in ε):", ""]
        lines += [
            f"- {r['site']} {r['task']} (round {r['round']}): ε {fmt(r['epsilon'], '.3f')} after "
            f"{r['releases']} releases"
            for r in section["other"]
        ]
    return "\n".join(lines) + "\n"
