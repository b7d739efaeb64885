"""Communication section of the run report: bytes each site sent, before and after compression.

The numbers are the serialized message sizes the sites' compression filter measured
(``bytes_raw``, ``bytes_sent``) and what the server measured on arrival (``bytes_received``),
recorded per round in the run record. A job without the compression filters has no section.
"""

from __future__ import annotations

from fedhealth.constants import M_BYTES_RAW, M_BYTES_RECEIVED, M_BYTES_SENT, M_COMPRESSION
from fedhealth.reports.run_record import RunRecord


def communication_section(record: RunRecord) -> dict | None:
    """Per-site and total bytes over the job's rounds, and the compression ratio; None if unmeasured."""
    sites: dict[str, dict] = {}
    modes = set()
    for rnd in record.get("rounds", []):
        for site, metrics in rnd.get("sites", {}).items():
            if metrics.get(M_BYTES_SENT) is None:
                continue
            row = sites.setdefault(site, {"rounds": 0, M_BYTES_RAW: 0, M_BYTES_SENT: 0, M_BYTES_RECEIVED: 0})
            row["rounds"] += 1
            for key in (M_BYTES_RAW, M_BYTES_SENT, M_BYTES_RECEIVED):
                row[key] += int(metrics.get(key) or 0)
            modes.add(metrics.get(M_COMPRESSION))
    if not sites:
        return None
    for row in sites.values():
        row["ratio"] = row[M_BYTES_RAW] / row[M_BYTES_SENT] if row[M_BYTES_SENT] else None
    raw = sum(r[M_BYTES_RAW] for r in sites.values())
    sent = sum(r[M_BYTES_SENT] for r in sites.values())
    return {
        "modes": sorted(m for m in modes if m),
        "sites": dict(sorted(sites.items())),
        "total": {M_BYTES_RAW: raw, M_BYTES_SENT: sent, "ratio": raw / sent if sent else None},
    }


def communication_markdown(section: dict | None) -> str:
    """A Markdown table of the section (empty text when the job did not compress)."""
    if not section:
        return ""
    lines = [
        "## Communication (site to server, serialized messages)",
        "",
        f"Compression: {', '.join(section['modes']) or 'none'}.",
        "",
        "| site | rounds | bytes before | bytes sent | bytes received | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for site, r in section["sites"].items():
        ratio = f"{r['ratio']:.1f}x" if r["ratio"] else "n/a"
        sizes = " | ".join(f"{r[k]:,}" for k in (M_BYTES_RAW, M_BYTES_SENT, M_BYTES_RECEIVED))
        lines.append(f"| {site} | {r['rounds']} | {sizes} | {ratio} |")
    t = section["total"]
    ratio = f"{t['ratio']:.1f}x" if t["ratio"] else "n/a"
    lines.append(f"| **total** | | {t[M_BYTES_RAW]:,} | {t[M_BYTES_SENT]:,} | | {ratio} |")
    return "\n".join(lines) + "\n"
