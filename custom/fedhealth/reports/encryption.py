"""Encryption section of the run report: scheme, CKKS parameters, layers encrypted, bytes per round.

The numbers are what the server's :class:`~fedhealth.filters.he_update_meter.HEUpdateMeter`
recorded for each site's update: the message as it arrived (ciphertexts and any clear layers) and
the same message with every layer in clear float32, both FOBS-serialized as FLARE sends them. A job
without HE has no section.
"""

from __future__ import annotations

from fedhealth.constants import (
    M_HE,
    M_HE_BYTES_PLAIN,
    M_HE_BYTES_SENT,
    TASK_EHR_PROFILE,
    TASK_FED_STATS,
)
from fedhealth.reports.run_record import RunRecord, had_task

PARAMS = ("scheme", "poly_modulus_degree", "slots", "scale_bits")
# What the steps before training send in clear, by the task that marks the step.
STEPS_IN_CLEAR = {
    TASK_FED_STATS: (
        "the federated feature moments of the fed_stats step (per-site count, sum, sum of squares)"
    ),
    TASK_EHR_PROFILE: (
        "the feature profiles of the alignment step (per site: its row count and, per feature, present "
        "and missing counts, sum and sum of squares, category counts and histogram counts, counts below "
        "the job's min_cell suppressed) and the aligned schema the server sends back (the kept features, "
        "imputation values, means and standard deviations, and every site's present and missing counts)"
    ),
}


def encryption_section(record: RunRecord) -> dict | None:
    """Parameters, encrypted and clear layers, and per-site bytes per round; None for a clear job."""
    sites: dict[str, dict] = {}
    params: dict = {}
    encrypted: set[str] = set()
    clear: set[str] = set()
    values = {"values_encrypted": 0, "values_clear": 0}
    for rnd in record.get("rounds", []):
        for site, metrics in rnd.get("sites", {}).items():
            facts = metrics.get(M_HE)
            if not isinstance(facts, dict):
                continue
            params = params or {k: facts.get(k) for k in PARAMS}
            encrypted.update(facts.get("encrypted_layers", []))
            clear.update(facts.get("clear_layers", []))
            values = {k: facts.get(k, 0) for k in values}
            row = sites.setdefault(site, {"rounds": 0, M_HE_BYTES_SENT: 0, M_HE_BYTES_PLAIN: 0})
            row["rounds"] += 1
            row[M_HE_BYTES_SENT] += int(facts.get(M_HE_BYTES_SENT) or 0)
            row[M_HE_BYTES_PLAIN] += int(facts.get(M_HE_BYTES_PLAIN) or 0)
    if not sites:
        return None
    for row in sites.values():
        row["bytes_per_round"] = row[M_HE_BYTES_SENT] / row["rounds"]
        row["plain_bytes_per_round"] = row[M_HE_BYTES_PLAIN] / row["rounds"]
        row["ratio"] = row[M_HE_BYTES_SENT] / row[M_HE_BYTES_PLAIN] if row[M_HE_BYTES_PLAIN] else None
    return {
        **params,
        "encrypted_layers": sorted(encrypted),
        "clear_layers": sorted(clear - encrypted),
        **values,
        "sites": dict(sorted(sites.items())),
        "in_clear": [
            *(text for task, text in STEPS_IN_CLEAR.items() if had_task(record, task)),
            "aggregate metrics (losses, accuracy, AUC, sample counts) and the streamed training curves",
            *(
                [f"the layers not encrypted: {', '.join(sorted(clear - encrypted))}"]
                if clear - encrypted
                else []
            ),
        ],
    }


def encryption_markdown(section: dict | None) -> str:
    """A Markdown paragraph and table of the section (empty text for a job without HE)."""
    if not section:
        return ""
    clear = ", ".join(section["clear_layers"]) or "none"
    lines = [
        "## Encryption (homomorphic, site updates)",
        "",
        f"Scheme {section['scheme']}, polynomial modulus degree {section['poly_modulus_degree']} "
        f"({section['slots']} slots per ciphertext), scale 2^{section['scale_bits']}. "
        f"Encrypted layers: {', '.join(section['encrypted_layers']) or 'none'} "
        f"({section['values_encrypted']:,} values); in clear: {clear} ({section['values_clear']:,} values). "
        "The server aggregated ciphertexts it cannot decrypt (its context has no secret key).",
        "",
        "| site | rounds | bytes sent per round | same update in clear | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for site, r in section["sites"].items():
        ratio = f"{r['ratio']:.0f}x" if r["ratio"] else "n/a"
        sizes = f"{r['bytes_per_round']:,.0f} | {r['plain_bytes_per_round']:,.0f}"
        lines.append(f"| {site} | {r['rounds']} | {sizes} | {ratio} |")
    lines += ["", "Still in clear: " + "; ".join(section["in_clear"]) + "."]
    return "\n".join(lines) + "\n"
