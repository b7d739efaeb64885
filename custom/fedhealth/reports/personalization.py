"""Personal vs global per site: what personalization (Ditto, fine-tuning, clusters) gives each hospital.

Numbers only (per-site metrics), never patient data.
"""

from __future__ import annotations

from collections.abc import Mapping


def personal_vs_global(
    personal: Mapping[str, float], global_: Mapping[str, float], *, method: str
) -> dict[str, dict[str, float | str]]:
    """Per site: the personal and the global model's metric and the gain of personalizing.

    Raises:
        ValueError: when the two carry different sites.
    """
    if set(personal) != set(global_):
        raise ValueError(
            f"Personal and global metrics name different sites: {sorted(personal)} vs {sorted(global_)}."
        )
    return {
        site: {
            "personal": personal[site],
            "global": global_[site],
            "gain": personal[site] - global_[site],
            "method": method,
        }
        for site in personal
    }


def best_by_site(per_method: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float | str]]:
    """For each site, the method with the highest metric, with the runner-up's margin.

    Args:
        per_method: ``{method: {site: metric}}``; every method must score the same sites.
    """
    if not per_method:
        raise ValueError("best_by_site needs at least one method.")
    sites = set(next(iter(per_method.values())))
    if any(set(row) != sites for row in per_method.values()):
        raise ValueError("Every method must score the same sites.")
    out = {}
    for site in sorted(sites):
        ranked = sorted(per_method, key=lambda m: (-per_method[m][site], m))
        second = per_method[ranked[1]][site] if len(ranked) > 1 else per_method[ranked[0]][site]
        out[site] = {
            "method": ranked[0],
            "value": per_method[ranked[0]][site],
            "margin": per_method[ranked[0]][site] - second,
        }
    return out


def format_personal(rows: Mapping[str, Mapping[str, float | str]]) -> str:
    """Aligned text: site, personal, global, gain."""
    lines = [f"{'site':15s} {'personal':>9s} {'global':>8s} {'gain':>7s}"]
    for site, row in rows.items():
        lines.append(f"{site:15s} {row['personal']:9.3f} {row['global']:8.3f} {row['gain']:+7.3f}")
    return "\n".join(lines)
