"""The run report of a finished heart job: per-site table, global figures, rounds, cross-site matrix.

Built from what the server keeps (``fedhealth_run.json`` and FLARE's ``cross_val_results.json``),
which hold aggregate metrics only. Writes ``report.json``, ``report.md`` and ``rounds.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fedhealth.constants import (
    CROSS_VAL_DIR,
    CROSS_VAL_FILE,
    M_ACCURACY,
    M_AUC,
    M_LOSS,
    M_N_TEST,
    M_N_TRAIN,
    M_SUPPRESSED,
    RUN_RECORD_FILE,
)
from fedhealth.reports.asynchronous import async_markdown, async_section
from fedhealth.reports.attack_figures import attack_figures, default_audit_path, load_audit, run_epsilon
from fedhealth.reports.attack_settings import job_settings
from fedhealth.reports.client_dp_report import client_dp_markdown, client_dp_section
from fedhealth.reports.communication import communication_markdown, communication_section
from fedhealth.reports.ehr_alignment import alignment_markdown, plot_missingness
from fedhealth.reports.encryption import encryption_markdown, encryption_section
from fedhealth.reports.operating_point import operating_point_markdown, operating_point_section
from fedhealth.reports.personalization import format_personal, personal_from_record
from fedhealth.reports.plots import write_plots
from fedhealth.reports.privacy_report import attack_markdown, plot_privacy, privacy_markdown, privacy_section
from fedhealth.reports.run_record import RunRecord, eval_split, load_record
from fedhealth.reports.sampling_report import sampling_section
from fedhealth.reports.site_report import (
    cross_site_matrix,
    decision,
    fairness_markdown,
    fairness_section,
    participation,
    participation_markdown,
    site_curves,
    site_rows,
)
from fedhealth.reports.summary import AUC_LABEL, weighted_mean
from fedhealth.reports.update_privacy import update_privacy_markdown, update_privacy_section

GLOBAL_MODEL_PREFIX = "SRV_"


def find_run_files(result_dir: Path) -> tuple[RunRecord, dict]:
    """The run record and the cross-site results inside a downloaded job result folder."""
    result_dir = Path(result_dir)
    records = sorted(result_dir.rglob(RUN_RECORD_FILE))
    if not records:
        raise FileNotFoundError(
            f"no {RUN_RECORD_FILE} under {result_dir}: did the job use fedhealth's RunRecorder?"
        )
    record = load_record(records[0])
    cross = sorted(result_dir.rglob(f"{CROSS_VAL_DIR}/{CROSS_VAL_FILE}"))
    return record, (json.loads(cross[0].read_text()) if cross else {})


def _global_model_name(cross: dict) -> str | None:
    names = {model for site in cross.values() for model in site}
    server = sorted(n for n in names if n.startswith(GLOBAL_MODEL_PREFIX))
    return server[0] if server else None


def build_report(
    job: str,
    record: RunRecord,
    cross: dict,
    *,
    client_config: dict | None = None,
    server_config: dict | None = None,
    audit: Path | None = None,
) -> dict:
    """The report as a dict: ``job``, ``rounds``, ``sites``, ``global``, ``history``, ``cross_site``, ...

    ``client_config``/``server_config``: the job's ``config_fed_client.json``/``config_fed_server.json``
    as run (the batch size and protections of ``attack_figures``; without them the record alone is
    read). ``audit``: the privacy audit's results file (default: ``results/bench_privacy_attacks.json``
    of the checkout, :func:`~fedhealth.reports.attack_figures.default_audit_path`).
    """
    model = _global_model_name(cross)
    rounds = record.get("rounds", [])
    last_sizes = {}
    for rnd in rounds:
        for site, metrics in rnd.get("sites", {}).items():
            last_sizes[site] = (metrics.get(M_N_TRAIN), metrics.get(M_N_TEST))
    sites = []
    for site in sorted(set(cross) | set(last_sizes)):
        final = cross.get(site, {}).get(model, {}) if model else {}
        n_train, n_test = last_sizes.get(site, (final.get(M_N_TRAIN), final.get(M_N_TEST)))
        first = rounds[0].get("sites", {}).get(site, {}) if rounds else {}
        sites.append(
            {
                "name": site,
                "n_train": _int(n_train),
                "n_test": _int(n_test),
                "accuracy": final.get(M_ACCURACY),
                "auc": final.get(M_AUC),
                "loss": final.get(M_LOSS),
                "initial": {k: first.get(f"global_{k}") for k in (M_ACCURACY, M_AUC, M_LOSS)},
                "suppressed": list(final.get(M_SUPPRESSED) or []),  # what the site withheld (small cells)
            }
        )
    section = fairness_section(cross, model, record)
    extra = site_rows(section)
    for row in sites:
        row.update(extra.get(row["name"], {"flagged": False, "deploy": None}))
    weights = {s["name"]: float(s["n_test"] or 0) for s in sites}
    accuracies = {s["name"]: s["accuracy"] for s in sites}
    scored = [a for a in accuracies.values() if a is not None]
    return {
        "job": job,
        "job_id": record.get("job_id"),
        "rounds": len(rounds),
        "sites": sites,
        "global": {
            "accuracy": weighted_mean(accuracies, weights),
            "auc": weighted_mean({s["name"]: s["auc"] for s in sites}, weights),
            "client_avg_accuracy": sum(scored) / len(scored) if scored else None,
            "worst_site_accuracy": min(scored) if scored else None,
            "model": model,
            "auc_label": AUC_LABEL,
            "note": f"accuracy: over all sites' test patients; AUC: {AUC_LABEL} (weights: test sizes), "
            "not a pooled AUC",
        },
        "eval_split": eval_split(record),
        "history": [
            {
                "round": r.get("round"),
                "global_accuracy": r.get("global_accuracy"),
                "global_auc": r.get("global_auc"),
            }
            for r in rounds
        ],
        "cross_site": {
            site: {m: v.get(M_ACCURACY) for m, v in models.items()} for site, models in cross.items()
        },
        "cross_site_matrix": {
            metric: cross_site_matrix(cross, metric)
            for metric in {M_ACCURACY, section["settings"]["primary_metric"]}
        },
        "deploy_decision": decision(section),
        "gate": section["gate"],
        "per_finding": section["findings"],
        "positive_class": section["positive"],
        "operating_point": operating_point_section(cross, model),
        "flags": section["flags"],
        "curves": site_curves(record),
        "participation": participation(record),
        "sampling": sampling_section(record),
        "asynchronous": async_section(record),
        "rejected_updates": record.get("rejected_updates", []),
        "late_results": record.get("late_results", []),
        "status": record.get("status"),
        "abort_reason": record.get("abort_reason"),
        "disconnected": record.get("disconnected", []),
        "divergence": record.get("divergence"),
        "failures": record.get("failures", []),
        "communication": communication_section(record),
        "privacy": privacy_section(record),
        "client_dp": client_dp_section(record),
        "update_privacy": update_privacy_section(record),
        "attack_figures": _attack_figures(job, record, client_config, server_config, audit),
        "encryption": encryption_section(record),
        "personal_vs_global": personal_from_record(record, accuracies),
        "model": record.get("model"),
    }


def _attack_figures(
    job: str, record: RunRecord, client_config: dict | None, server_config: dict | None, audit: Path | None
) -> dict:
    """The measured attacks for this job's settings (:mod:`fedhealth.reports.attack_figures`)."""
    path = Path(audit) if audit is not None else default_audit_path()
    settings = job_settings(job, record, client_config, server_config)
    epsilon = run_epsilon(privacy_section(record), update_privacy_section(record))
    return attack_figures(settings, load_audit(path), audit_path=path, run_epsilon=epsilon)


def _int(value: object) -> int | None:
    return int(value) if value is not None else None


def _fmt(value: float | None, withheld: bool = False) -> str:
    if value is None:
        return "suppressed" if withheld else "n/a"
    return f"{value:.3f}"


def _withheld(site: dict, key: str) -> bool:
    """Whether the site withheld ``key`` of its validation as a small cell (its ``suppressed`` list)."""
    return any(str(s).split(":")[0] == key for s in site.get("suppressed") or [])


def site_table(report: dict) -> str:
    """A Markdown table of the sites and the global row."""
    lines = ["| site | n_train | n_test | accuracy | AUC |", "|---|---:|---:|---:|---:|"]
    for s in report["sites"]:
        lines.append(
            f"| {s['name']} | {s['n_train']} | {s['n_test']} | "
            f"{_fmt(s['accuracy'], _withheld(s, M_ACCURACY))} | {_fmt(s['auc'], _withheld(s, M_AUC))} |"
        )
    g = report["global"]
    n_train = sum(s["n_train"] or 0 for s in report["sites"])
    n_test = sum(s["n_test"] or 0 for s in report["sites"])
    lines.append(f"| **global** | {n_train} | {n_test} | {_fmt(g['accuracy'])} | {_fmt(g['auc'])} |")
    lines += [
        "",
        f"global row: accuracy over all sites' test patients; AUC = {AUC_LABEL} (weights: test sizes), "
        "not a pooled AUC.",
    ]
    return "\n".join(lines)


def _when(report: dict) -> str:
    return f"in round {report['rounds']}" if report.get("rounds") else "before any training round completed"


def _rounds_text(report: dict) -> str:
    model = report.get("model")
    if report.get("asynchronous"):
        return f"{report['asynchronous']['versions']} versions (asynchronous, FedBuff)"
    return f"{model['trees']} boosting rounds" if model else f"{report['rounds']} rounds"


def model_line(model: dict | None) -> str:
    """What a tree job trained (its rounds are boosting rounds, not the report's training rounds)."""
    if not model:
        return ""
    return (
        f"Model: {model['family']} tree ensemble, {model['trees']} boosting rounds on {model['features']} "
        f"columns, the same at {len(model['sites'])} sites (SHA-256 {model['sha256'][:12]}...); "
        f"exported as `{model['file']}` in the job result.\n"
    )


def to_markdown(report: dict, seconds: float | None = None) -> str:
    g = report["global"]
    parts = [
        f"# fedhealth run report: {report['job']}",
        "",
        f"Job `{report['job_id']}`, {_rounds_text(report)}, {len(report['sites'])} sites"
        + (f", {seconds:.0f} s end to end." if seconds else "."),
        "",
        model_line(report.get("model")),
        "Final global model on each site's held-out test split:",
        "",
        site_table(report),
        "",
        f"Client-average accuracy {_fmt(g['client_avg_accuracy'])}, "
        f"worst site {_fmt(g['worst_site_accuracy'])}.",
        "",
        "![global metric per round](rounds.png)",
        "",
        participation_markdown(report),
        async_markdown(report.get("asynchronous")),
        alignment_markdown(report.get("alignment")),
        fairness_markdown(report),
        operating_point_markdown(report.get("operating_point")),
        communication_markdown(report.get("communication")),
        privacy_markdown(report.get("privacy")),
        client_dp_markdown(report.get("client_dp")),
        attack_markdown(report.get("attack_figures"), under_dp=bool(report.get("privacy"))),
        update_privacy_markdown(report.get("update_privacy")),
        encryption_markdown(report.get("encryption")),
    ]
    if report.get("status") == "aborted":
        parts += [
            "",
            f"**The job was aborted {_when(report)}: {report.get('abort_reason')}**",
        ]
    if report.get("disconnected"):
        parts += [""] + [f"- {d['site']} disconnected in round {d['round']}" for d in report["disconnected"]]
    if report.get("rejected_updates"):
        parts += ["", "## Rejected updates (never aggregated)", ""] + [
            f"- round {r.get('round')}, {r.get('site')}: {r.get('reason')}"
            for r in report["rejected_updates"]
        ]
    if report.get("personal_vs_global"):
        parts += ["", "## Personal vs global model, accuracy per site", "", "```"]
        parts += [format_personal(report["personal_vs_global"]), "```"]
    if report["failures"]:
        parts += ["", "## Failed sites", ""] + [failure_line(f) for f in report["failures"]]
    return "\n".join(parts) + "\n"


def failure_line(failure: dict) -> str:
    """One failed site as a Markdown list item: site, task (or 'no task ran'), reason."""
    return f"- {failure['site']} ({failure.get('task') or 'no task ran'}): {failure['reason']}"


def write_report(report: dict, out_dir: Path, seconds: float | None = None) -> list[Path]:
    """Write report.json, report.md and the PNG plots into ``out_dir`` (with the missingness heat map
    when the report has a feature-alignment section)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps({**report, "seconds": seconds}, indent=2) + "\n")
    md_path.write_text(to_markdown(report, seconds))
    extra = [plot_privacy(report["privacy"], out_dir / "privacy.png")] if report.get("privacy") else []
    alignment = report.get("alignment")
    if alignment:
        extra.append(plot_missingness(alignment, out_dir / alignment["heatmap"]))
    return [json_path, md_path, *write_plots(report, out_dir), *extra]
