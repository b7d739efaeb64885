"""The client-level DP part of a run report: DP-FedAvg's site-level (ε, δ) and the rate it was accounted at.

Built from the run record's ``client_dp`` (the server aggregator's ledger entry of every released
round, kept by the run recorder from the ``fedhealth.client_dp_round`` event).
"""

from __future__ import annotations

from fedhealth.reports.run_record import RunRecord


def client_dp_section(record: RunRecord) -> dict | None:
    """``{"rounds", "epsilon", "sample_rate", "sites", "final"}``: per released round its ε so far, the
    rate it was accounted at and how many updates it aggregated; None without DP-FedAvg."""
    entries = sorted(record.get("client_dp") or [], key=lambda e: e.get("round", 0))
    if not entries:
        return None
    last = entries[-1]
    final = {k: last.get(k) for k in ("epsilon", "delta", "noise_multiplier", "clip_norm", "expected_sites")}
    final["planned_sample_rate"] = last.get("planned_sample_rate", last.get("sample_rate"))
    final["rounds_released"] = len(entries)
    return {
        "rounds": [e.get("round") for e in entries],
        "epsilon": [e.get("epsilon") for e in entries],
        "sample_rate": [e.get("sample_rate") for e in entries],
        "sites": [len(e.get("sites") or []) for e in entries],
        "final": final,
    }


def client_dp_markdown(section: dict | None) -> str:
    """The final guarantee with its settings, then per round: updates aggregated, q, ε so far."""
    if not section:
        return ""
    f = section["final"]
    planned = f["planned_sample_rate"]
    lines = [
        "## Client-level DP (DP-FedAvg on the server)",
        "",
        f"Site-level guarantee after {f['rounds_released']} released rounds: ε = {f['epsilon']:.3f}, "
        f"δ = {f['delta']:.2g} (noise σ = {f['noise_multiplier']:.3f}, clip C = {f['clip_norm']:g}, "
        f"fixed denominator m = {f['expected_sites']}, sampling rate q = {planned:.3f}).",
    ]
    other = [r for r, q in zip(section["rounds"], section["sample_rate"], strict=True) if q != planned]
    if other:
        rounds = ", ".join(str(r) for r in other)
        lines += ["", f"Round(s) {rounds} were accounted at a higher q: fewer sites were connected."]
    lines += ["", "| round | sites aggregated | q | ε so far |", "|---:|---:|---:|---:|"]
    for r, n, q, e in zip(
        section["rounds"], section["sites"], section["sample_rate"], section["epsilon"], strict=True
    ):
        lines.append(f"| {r} | {n} | {q:.3f} | {e:.2f} |")
    return "\n".join(lines) + "\n"
