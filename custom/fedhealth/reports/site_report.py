"""The per-site part of a run report: intervals, 2-SD flags, the deployment gate, curves, matrix.

Input is what the server keeps: each site's validation of the final global model (with the 95%
bootstrap intervals the site computed itself), the per-round record and the gate settings from the
job config. The overall decision follows the minimum site, never the mean.
"""

from __future__ import annotations

from fedhealth.constants import M_INTERVALS, M_SUPPRESSED, STREAMED_METRICS, TASK_TRAIN
from fedhealth.reports.fairness import deployment_gate, flag_sites, site_values
from fedhealth.reports.finding_gate import finding_gate, site_findings
from fedhealth.reports.finding_table import failing_text, finding_markdown
from fedhealth.reports.positive_class import positive_class, sensitivity_label
from fedhealth.reports.run_record import RunRecord
from fedhealth.reports.sampling_report import sampling_markdown
from fedhealth.training.site_metrics import METRICS

SUPPRESSED_TEXT = "suppressed"  # a value a site withheld as a small cell


def site_intervals(cross: dict, model: str | None) -> dict[str, dict]:
    """Each site's intervals for ``model`` (the global model) from the cross-site results."""
    if model is None:
        return {}
    return {
        site: models[model][M_INTERVALS]
        for site, models in cross.items()
        if model in models and M_INTERVALS in models[model]
    }


def site_curves(record: RunRecord) -> dict[str, dict[str, list]]:
    """Per site, per streamed metric: the value in each round (None where the site did not report)."""
    rounds = record.get("rounds", [])
    names = sorted({site for r in rounds for site in r.get("sites", {})})
    return {
        site: {key: [r.get("sites", {}).get(site, {}).get(key) for r in rounds] for key in STREAMED_METRICS}
        for site in names
    }


def participation(record: RunRecord) -> dict[str, dict]:
    """Per site: rounds its update went into the global model, the share of all rounds, and the rounds
    it missed (no result), was late for (its result came after the round had closed and was dropped)
    or had rejected by the server's validation. The three lists do not overlap.

    With client sampling (``sampling`` in the record) a round a site was not sampled for is neither
    missed nor counted: it is listed under ``not_sampled_rounds``, ``sampled`` counts the others and
    ``rate_when_sampled`` is the share of those its update went into. A round whose draw took no site
    (Poisson sampling) still counts among all rounds.
    """
    rounds = record.get("rounds", [])
    reported = {r.get("round", i): set(r.get("sites", {})) for i, r in enumerate(rounds)}
    draws = {d["round"]: set(d.get("sampled", [])) for d in (record.get("sampling") or {}).get("rounds", [])}
    numbers = sorted(set(reported) | set(draws))
    names = sorted(set().union(*reported.values(), *draws.values()) | set(record.get("sites", [])))
    rejected: dict[str, set] = {}
    for item in record.get("rejected_updates", []):
        rejected.setdefault(item.get("site"), set()).add(item.get("round"))
    late = late_rounds(record)
    out = {}
    for site in names:
        too_late = sorted(late.get(site, set()) & set(numbers))
        sent = {n for n in numbers if site in reported.get(n, set())} - set(too_late)
        gone = sent | set(too_late)  # rounds it sent something for, in time or not
        not_sampled = [n for n in numbers if n in draws and site not in draws[n] and n not in gone]
        missed = [n for n in numbers if n not in gone and n not in not_sampled]
        refused = sorted(rejected.get(site, set()) - set(missed) - set(too_late))
        counted = len(numbers) - len(missed) - len(too_late) - len(refused) - len(not_sampled)
        out[site] = {
            "rounds": counted,
            "rate": counted / len(numbers) if numbers else None,
            "missed_rounds": missed,
            "late_rounds": too_late,
            "rejected_rounds": refused,
        }
        if draws:
            sampled = len(numbers) - len(not_sampled)
            out[site].update(
                sampled=sampled,
                not_sampled_rounds=not_sampled,
                rate_when_sampled=counted / sampled if sampled else None,
            )
    return out


def participation_markdown(report: dict) -> str:
    """One line per site that missed rounds (a dropped, late or rejected site); empty when all took part.

    Late results (after their round had closed, dropped) are listed again by the round in progress
    when they came: a site late every round is one whose rounds take longer than the job waits.
    """
    rows = report.get("participation", {})
    if report.get("sampling"):  # a table of every site's sampled, contributed, missed, not-sampled rounds
        return sampling_markdown(report) + _late_lines(report)
    if not report.get("rounds"):  # no training rounds (a tree job boosts in lock-step, or none ran)
        return ""
    if report.get("asynchronous"):  # no site waits for a round: it trains from the version it is sent
        return _async_lines(rows, report["rounds"]) + _late_lines(report)
    missed = {
        site: p
        for site, p in rows.items()
        if p["missed_rounds"] or p.get("late_rounds") or p.get("rejected_rounds")
    }
    if not missed:
        return f"All {len(rows)} sites contributed to every round.\n" if rows else ""
    lines = ["Participation (sites that missed rounds):", ""]
    for site, p in missed.items():
        lines.append(
            f"- {site}: {p['rounds']} of {report['rounds']} rounds ({p['rate']:.0%}); "
            f"missed {p['missed_rounds']}, late {p.get('late_rounds', [])}, "
            f"rejected {p.get('rejected_rounds', [])}"
        )
    return "\n".join(lines) + "\n" + _late_lines(report)


def _async_lines(rows: dict, total: int) -> str:
    """Asynchronous participation: how many versions each site trained from, and how many were not used."""
    lines = ["Participation (asynchronous: the versions each site trained from):", ""]
    for site, p in rows.items():
        refused = len(p.get("rejected_rounds") or [])
        trained = p["rounds"] + refused
        lines.append(
            f"- {site}: trained from {trained} of {total} versions ({trained / total:.0%})"
            + (f"; {refused} of those updates not used (rejected updates below)" if refused else "")
        )
    return "\n".join(lines) + "\n"


def _late_lines(report: dict) -> str:
    """Each late result that was not used: site, task, its round, the round in progress, why."""
    late = [x for x in report.get("late_results", []) if not x.get("used")]
    if not late:
        return ""
    lines = ["", "Late results (arrived after their round had closed; not used):", ""]
    lines += [
        f"- {x['site']}: {x.get('task') or 'task'} of round {x.get('round')}, arrived during round "
        f"{x.get('during_round')} ({x.get('reason')})"
        for x in late
    ]
    return "\n".join(lines) + "\n"


def late_rounds(record: RunRecord) -> dict[str, set]:
    """Per site, the training rounds whose result arrived after the round closed and was not used."""
    out: dict[str, set] = {}
    for item in record.get("late_results", []):
        if item.get("task") == TASK_TRAIN and not item.get("used") and item.get("round") is not None:
            out.setdefault(item["site"], set()).add(item["round"])
    return out


def cross_site_matrix(cross: dict, metric: str) -> dict:
    """``{"metric", "models", "sites", "values": [[site x model]]}`` (None where not evaluated)."""
    models = sorted({m for per_site in cross.values() for m in per_site})
    sites = sorted(cross)
    values = [[_metric(cross[s].get(m, {}), metric) for m in models] for s in sites]
    return {"metric": metric, "models": models, "sites": sites, "values": values}


def _metric(result: dict, metric: str) -> float | None:
    intervals = result.get(M_INTERVALS, {})
    if metric in intervals:
        return intervals[metric].get("value")
    return result.get(metric)


def fairness_section(cross: dict, model: str | None, record: RunRecord) -> dict:
    """Flags, gate and summary for every metric; the primary metric decides deployment.

    A job whose sites send per-finding intervals (multi-label, multi-class) is decided by the
    per-finding gate (``findings``); ``gate`` then judges "any finding" and is shown for information.
    """
    gate_cfg = record.get("gate") or {"primary_metric": "auc", "threshold": 0.75, "flag_sd": 2.0}
    intervals = site_intervals(cross, model)
    flags = {}
    for metric in METRICS:
        values, reasons = site_values(intervals, metric)
        flags[metric] = flag_sites(values, k=gate_cfg["flag_sd"], reasons=reasons)
    gate = (
        deployment_gate(intervals, metric=gate_cfg["primary_metric"], threshold=gate_cfg["threshold"])
        if intervals
        else None
    )
    per_finding = site_findings(cross, model)
    findings = (
        finding_gate(
            per_finding,
            metric=gate_cfg["primary_metric"],
            threshold=gate_cfg["threshold"],
            finding_thresholds=gate_cfg.get("finding_thresholds"),
        )
        if per_finding
        else None
    )
    return {
        "settings": gate_cfg,
        "flags": flags,
        "gate": gate,
        "intervals": intervals,
        "findings": findings,
        "positive": positive_class(cross, model),
    }


def decision(section: dict) -> str:
    """The deployment decision: the per-finding gate's where there is one, else the site gate's."""
    judge = section.get("findings") or section.get("gate") or {}
    return judge.get("decision", "DO NOT DEPLOY")


def site_rows(section: dict) -> dict[str, dict]:
    """What each site's row of the report gains: intervals, flagged, deploy."""
    primary = section["settings"]["primary_metric"]
    flags = section["flags"][primary]["sites"]
    gate_sites = (section["gate"] or {}).get("sites", {})
    findings = section.get("findings")
    rows = {}
    for site, iv in section["intervals"].items():
        deploy = gate_sites.get(site, {}).get("decision")
        reason = gate_sites.get(site, {}).get("reason")
        if findings:  # the site's decision over all its findings
            deploy = findings["sites"].get(site)
            failed = failing_text({"failing": [c for c in findings["failing"] if c["site"] == site]})
            reason = f"failing finding(s): {failed}" if failed else "every finding clears its threshold"
        rows[site] = {
            "metrics": {m: iv.get(m) for m in METRICS},
            "n_pos": iv.get("n_pos"),
            "n_neg": iv.get("n_neg"),
            "flagged": bool(flags.get(site, {}).get("flagged", False)),
            "deploy": deploy,
            "deploy_reason": reason,
        }
    return rows


def ci_text(m: dict | None) -> str:
    """A metric as ``value [lo, hi]`` (3 decimals), the value alone without an interval, ``suppressed``
    (withheld by the site as a small cell), or ``n/a``."""
    if m and m.get(M_SUPPRESSED):
        return SUPPRESSED_TEXT
    if not m or m.get("value") is None:
        return "n/a"
    if m.get("lo") is None:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]"


def count_text(row: dict, key: str) -> str:
    """A class count in a site row: the number, ``suppressed`` (a small cell withheld), or ``n/a``."""
    value = row.get(key)
    if value is not None:
        return str(value)
    return SUPPRESSED_TEXT if row.get("metrics") else "n/a"


def fairness_markdown(report: dict) -> str:
    """The report's per-site validation section: intervals, flags, gate, divergence."""
    gate = report.get("gate") or {}
    per_finding = report.get("per_finding")
    positive = report.get("positive_class") or {}
    lines = ["## Per-site validation of the final global model (95% bootstrap CI)", ""]
    lines += [
        f"| site | n (pos/neg) | AUC | accuracy | {sensitivity_label(positive)} | specificity | flagged | "
        "decision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in report["sites"]:
        m = s.get("metrics") or {}
        lines.append(
            f"| {s['name']} | {s.get('n_test')} ({count_text(s, 'n_pos')}/{count_text(s, 'n_neg')}) | "
            + "".join(f"{ci_text(m.get(k))} | " for k in ("auc", "accuracy", "sensitivity", "specificity"))
            + f"{'FLAGGED' if s.get('flagged') else 'no'} | {s.get('deploy') or 'n/a'} |"
        )
    lines += ["", _positive_line(positive, bool(per_finding)), ""]
    for s in report["sites"]:
        reasons = [m["reason"] for m in (s.get("metrics") or {}).values() if m and m.get("reason")]
        for reason in dict.fromkeys(reasons):  # a small cell withholds every metric for one reason
            lines.append(f"- {s['name']}: {reason}.")
    primary = (report.get("gate") or {}).get("metric") or "auc"
    flags = (report.get("flags") or {}).get(primary, {})
    if flags:
        summary = (
            f"{primary}: mean {_num(flags.get('mean'))}, minimum {_num(flags.get('min'))} "
            f"({flags.get('min_site')}), best-worst gap {_num(flags.get('gap'))}."
        )
        lines += ["", summary]
        if flags.get("reason"):
            lines.append(f"Flag rule ({flags.get('k')} SD below the mean): {flags['reason']}")
    if gate:
        title = "Any-finding gate (information only; the per-finding gate below decides)"
        lines += [
            "",
            f"**{title if per_finding else 'Deployment gate'}: {gate.get('decision')}** "
            f"({gate.get('metric')} lower 95% bound "
            f">= {gate.get('threshold')} at every site; deciding site: {gate.get('deciding_site')}). "
            f"{gate.get('rule', '')}.",
        ]
        for site, d in gate.get("sites", {}).items():
            if d.get("reason"):
                lines.append(f"- {site}: {d['decision']}: {d['reason']}")
    if per_finding:
        lines += ["", finding_markdown(per_finding)]
    divergence = report.get("divergence") or {}
    if divergence.get("diverging"):
        lines += ["", f"**Warning:** {divergence.get('message')}"]
    lines += ["", "![per-site metrics](site_metrics.png)", "", "![per-site curves](site_curves.png)", ""]
    lines += ["![cross-site matrix](cross_site.png)"]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _positive_line(positive: dict, multi: bool) -> str:
    name = positive.get("name") or "1 (label value)"
    line = (
        f"Positive class: {name}. Sensitivity is the share of positive-class patients the model flags at "
        "the site's decision threshold, specificity the share of the others it clears."
    )
    if multi:
        line += (
            ' Multi-label or multi-class job: the columns above judge "any finding" (multi-label: the most '
            "likely finding's probability; multi-class: any class but the first); the finding x site table "
            "below judges each finding (each class, one-vs-rest)."
        )
    if positive.get("note"):
        line += f" Note: {positive['note']}."
    return line
