"""The report's finding x site table and the per-finding gate's decision line (Markdown and text)."""

from __future__ import annotations

from fedhealth.constants import M_SUPPRESSED
from fedhealth.reports.fairness import DEPLOY, NOT_EVALUABLE

PASS, FAIL = "pass", "**FAIL**"


def _cell(entry: dict) -> str:
    value, lo, hi = entry.get("value"), entry.get("lower_bound"), entry.get("hi")
    mark = PASS if entry.get("decision") == DEPLOY else FAIL
    if entry.get(M_SUPPRESSED):
        return f"suppressed ({NOT_EVALUABLE}) {mark}"
    if value is None:
        return f"n/a {mark}"
    if lo is None or hi is None:
        return f"{value:.3f} {mark}"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}] {mark}"


def failing_text(section: dict) -> str:
    """``Effusion at b; Hernia at a, c`` (the failing findings, each with its failing sites)."""
    by_finding: dict[str, list[str]] = {}
    for cell in section.get("failing", []):
        by_finding.setdefault(cell["finding"], []).append(cell["site"])
    parts = [f"{f} at {', '.join(sites)}" for f, sites in by_finding.items()]
    unknown = section.get("unknown_thresholds", [])
    parts += [f"{f} (a threshold for a finding no site reported)" for f in unknown]
    if not section.get("findings"):
        parts.append("no site reported any finding")
    return "; ".join(parts)


def decision_line(section: dict) -> str:
    """The gate's decision, its rule and, when it fails, the failing findings and sites."""
    pct = f"{section['confidence']:.0%}" if section.get("confidence") is not None else "95%"
    line = (
        f"Per-finding deployment gate: {section['decision']} ({section['metric']} lower {pct} bound "
        f">= each finding's threshold at every site)"
    )
    failing = failing_text(section)
    return f"{line}; failing: {failing}." if failing else f"{line}."


def finding_markdown(section: dict | None) -> str:
    """The finding x site table: the metric with its interval, the threshold and pass/fail per cell."""
    if not section:
        return ""
    sites = list(section["sites"])
    metric = section["metric"]
    lines = [f"## Per-finding gate: {metric} per finding and site (95% bootstrap CI)", ""]
    lines += ["| finding | threshold | " + " | ".join(sites) + " |", "|---|---:|" + "---|" * len(sites)]
    for finding, gate in section["findings"].items():
        cells = " | ".join(_cell(gate["sites"][s]) for s in sites)
        lines.append(f"| {finding} | {section['thresholds'][finding]:g} | {cells} |")
    lines += ["", f"**{decision_line(section)}** {section['rule'].capitalize()}.", ""]
    for cell in section.get("failing", []):
        lines.append(f"- {cell['finding']} at {cell['site']}: {cell['reason']}")
    for name in section.get("unknown_thresholds", []):
        lines.append(
            f"- finding_thresholds names {name!r}, which no site reported: check the job's classes "
            "against the RunRecorder's finding_thresholds"
        )
    return "\n".join(lines) + "\n"
