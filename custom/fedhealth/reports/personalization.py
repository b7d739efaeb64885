"""Personal vs global per site: what personalization (Ditto, fine-tuning, clusters) gives each hospital.

Numbers only (per-site metrics), never patient data.
"""

from __future__ import annotations

from collections.abc import Mapping

from fedhealth.reports.run_record import RunRecord


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


def personal_from_record(
    record: RunRecord, final_global: Mapping[str, float | None] | None = None
) -> dict[str, dict[str, float | str]] | None:
    """Personal vs global per site from a FLARE run record (the Ditto job's sites report both).

    Personal: each site's ``personal_accuracy`` in the last round. Global: the final global model's
    accuracy at that site (``final_global``, from cross-site evaluation) where given, else the
    global model the site received in that round. None when no site reported a personal model.
    """
    rounds = record.get("rounds") or []
    last = rounds[-1].get("sites", {}) if rounds else {}
    personal = {s: m["personal_accuracy"] for s, m in last.items() if m.get("personal_accuracy") is not None}
    if not personal:
        return None
    final_global = final_global or {}
    global_ = {
        s: final_global.get(s) if final_global.get(s) is not None else last[s].get("global_accuracy")
        for s in personal
    }
    if any(v is None for v in global_.values()):
        return None
    return personal_vs_global(personal, global_, method="personal model (last round)")
