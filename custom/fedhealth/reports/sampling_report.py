"""The client-sampling part of a run report: the plan (K of N, q), and who was sampled, trained, missed.

Built from the run record's ``sampling`` (each round's draw, kept by the run recorder from the
sampling workflow's ``fedhealth.sites_sampled`` event) and the per-site participation of
:func:`fedhealth.reports.site_report.participation`, which tells a round a site was not sampled for
apart from one it was sampled for and sent nothing.
"""

from __future__ import annotations

from fedhealth.reports.run_record import RunRecord


def sampling_section(record: RunRecord) -> dict | None:
    """``{"mode", "k", "n", "rate", "seeded", "rounds", "short_rounds", "empty_rounds", "draws"}``;
    None for a job whose workflow asks every site."""
    sampling = record.get("sampling")
    if not sampling:
        return None
    draws = sampling.get("rounds", [])
    return {
        "mode": sampling.get("mode"),
        "k": sampling.get("k"),
        "n": sampling.get("n"),
        "rate": sampling.get("rate"),
        "seeded": sampling.get("seeded"),
        "rounds": len(draws),
        "short_rounds": [
            {"round": d["round"], "connected": len(d.get("connected", [])), "rate": d.get("rate")}
            for d in draws
            if d.get("short")
        ],
        "empty_rounds": [d["round"] for d in draws if not d.get("sampled")],
        "draws": [{"round": d["round"], "sampled": list(d.get("sampled", []))} for d in draws],
    }


def sampling_markdown(report: dict) -> str:
    """The plan, then one row per site: rounds sampled, contributed, missed, rejected, not sampled."""
    section = report.get("sampling")
    if not section:
        return ""
    seed = (
        "seeded: the draws are reproducible, and predictable by whoever reads the job"
        if section.get("seeded")
        else "a fresh secret seed"
    )
    lines = [
        f"Client sampling: {section['k']} of {section['n']} sites a round ({section['mode']}, "
        f"q = {section['rate']:.3f}, {seed}), {section['rounds']} rounds.",
        "",
        "| site | sampled | contributed | missed (sampled, no result) | rejected | not sampled |",
        "|---|---:|---:|---|---|---|",
    ]
    for site, p in sorted((report.get("participation") or {}).items()):
        lines.append(
            f"| {site} | {p.get('sampled')} | {p['rounds']} | {_list(p['missed_rounds'])} | "
            f"{_list(p.get('rejected_rounds', []))} | {_list(p.get('not_sampled_rounds', []))} |"
        )
    if section["short_rounds"]:
        lines += ["", f"Rounds with fewer than {section['n']} sites connected (sampled from those present):"]
        lines += [
            f"- round {s['round']}: {s['connected']} connected, each taken with probability {s['rate']:.3f}"
            for s in section["short_rounds"]
        ]
    if section["empty_rounds"]:
        lines += ["", f"Rounds whose draw took no site: {_list(section['empty_rounds'])}."]
    return "\n".join(lines) + "\n"


def _list(rounds: list) -> str:
    return ", ".join(str(r) for r in rounds) if rounds else "–"
