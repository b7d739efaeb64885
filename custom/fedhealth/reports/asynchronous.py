"""The asynchronous part of a run report: who made each FedBuff version, and how stale it was.

Input is the ``asynchronous`` entry of the run record, which the
:class:`~fedhealth.workflows.fedbuff_controller.FedBuffController` keeps: its settings, every
version's buffer (site, the version it trained from, staleness, staleness weight), and the results
it dropped as too stale, the tasks that ended without a result and the results that came too late.
"""

from __future__ import annotations

from statistics import mean

from fedhealth.reports.run_record import RunRecord


def async_section(record: RunRecord) -> dict | None:
    """Per site: updates applied and their share, mean and largest staleness, mean staleness weight,
    results dropped as too stale, tasks timed out and late results; None for a synchronous job."""
    data = record.get("asynchronous")
    if not data:
        return None
    versions = data.get("versions", [])
    applied: dict[str, list[dict]] = {}
    for version in versions:
        for update in version.get("updates", []):
            applied.setdefault(update["site"], []).append(update)
    counts = {key: _per_site(data.get(key, [])) for key in ("dropped", "timeouts", "late")}
    names = sorted(set(applied).union(*counts.values()))
    total = sum(len(u) for u in applied.values())
    sites = {}
    for site in names:
        mine = applied.get(site, [])
        staleness = [u["staleness"] for u in mine]
        sites[site] = {
            "updates": len(mine),
            "share": len(mine) / total if total else None,
            "mean_staleness": mean(staleness) if staleness else None,
            "max_staleness": max(staleness) if staleness else None,
            "mean_staleness_weight": mean(u["staleness_weight"] for u in mine) if mine else None,
            **{key: per.get(site, 0) for key, per in counts.items()},
        }
    return {
        "algorithm": data.get("algorithm"),
        "settings": dict(data.get("settings", {})),
        "versions": len(versions),
        "updates": total,
        "sites": sites,
        "refused": data.get("refused", 0),
        "failed_sites": dict(data.get("failed_sites", {})),
        "unfinished": dict(data.get("unfinished", {})),
        "stopped": data.get("stopped"),
    }


def _per_site(items: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item["site"]] = out.get(item["site"], 0) + 1
    return out


def async_markdown(section: dict | None) -> str:
    """The report's asynchronous section; empty for a synchronous job."""
    if not section:
        return ""
    s = section["settings"]
    limit = s.get("max_staleness")
    lines = [
        "## Asynchronous aggregation (FedBuff)",
        "",
        f"{section['versions']} global versions from {section['updates']} site updates, "
        f"{s.get('buffer_size')} per version; an update trained from an older version counts "
        f"(1 + staleness)^-{s.get('staleness_exponent')} of its sample weight"
        + (f", and one more than {limit} versions old is dropped" if limit is not None else "")
        + f"; server learning rate {s.get('server_lr')}.",
        "",
        "| site | updates applied | share | mean staleness | max staleness | mean staleness weight "
        "| dropped (too stale) | timed out | late |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for site, row in section["sites"].items():
        lines.append(
            f"| {site} | {row['updates']} | {_pct(row['share'])} | {_num(row['mean_staleness'], 1)} | "
            f"{_num(row['max_staleness'], 0)} | {_num(row['mean_staleness_weight'], 3)} | "
            f"{row['dropped']} | {row['timeouts']} | {row['late']} |"
        )
    if section.get("stopped"):
        lines += ["", f"Stopped early: {section['stopped']}."]
    for site, reason in section.get("failed_sites", {}).items():
        lines += ["", f"{site} failed and was sent no more tasks: {reason}"]
    return "\n".join(lines) + "\n"


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
