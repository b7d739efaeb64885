"""One report for any finished job: the demo's, and ``fedhealth report <downloaded job result>``.

A job result is the folder FLARE's ``download_job`` (admin console) or ``download_job_result``
(FLARE API) writes: the server's run folder under ``workspace/`` with fedhealth's run record and
FLARE's cross-site results, and the submitted job's ``meta.json``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from fedhealth.constants import TB_DIR
from fedhealth.reports.ehr_alignment import alignment_section, find_ehr_schema
from fedhealth.reports.finding_table import decision_line
from fedhealth.reports.model_card import build_model_card, write_model_card
from fedhealth.reports.run_record import RunRecord
from fedhealth.reports.run_report import build_report, failure_line, find_run_files, site_table, write_report

META_FILE = "meta.json"
CLIENT_CONFIG = "config_fed_client.json"
SERVER_CONFIG = "config_fed_server.json"
SERVER_APP = "app_server"  # the server's copy of the deployed app, in the result's workspace/


@dataclass(frozen=True)
class JobResult:
    """What a downloaded job result holds for the report."""

    folder: Path
    job: str
    record: RunRecord
    cross: dict
    schema: dict | None = None  # the aligned EHR schema (ehr_schema.json) of a job that aligned features
    client_config: dict | None = None  # the config_fed_client.json the job ran with (None: not in the result)
    server_config: dict | None = None


def read_job_result(folder: Path) -> JobResult:
    """The job's name, run record, cross-site results and EHR schema in a downloaded job result folder.

    Raises:
        FileNotFoundError: the folder does not exist or holds no run record (the message says which).
        ValueError: its ehr_schema.json is not a readable aligned schema (the message names the file).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (give the folder download_job wrote)")
    record, cross = find_run_files(folder)
    return JobResult(
        folder,
        _job_name(folder),
        record,
        cross,
        find_ehr_schema(folder),
        _job_config(folder, CLIENT_CONFIG),
        _job_config(folder, SERVER_CONFIG),
    )


def _job_config(folder: Path, name: str) -> dict | None:
    """A job config in the result: the server's deployed copy (``workspace/app_server/config``: the app
    that ran) first, else the submitted job's (``job/<name>/<app>/config``); None when neither is there
    or it is not a JSON object."""
    found = sorted(folder.rglob(f"config/{name}"), key=lambda p: (SERVER_APP not in p.parts, len(p.parts), p))
    for path in found:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict):
            return data
    return None


def _job_name(folder: Path) -> str:
    """The job's name from FLARE's ``meta.json`` (the job folder's name as submitted), else the folder's."""
    for meta in sorted(folder.rglob(META_FILE), key=lambda p: len(p.parts)):
        try:
            data = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("job_id") and data.get("name"):
            return str(data["name"])
    return folder.name


def report_job_result(
    folder: Path, out_dir: Path, *, seconds: float | None = None, audit: Path | None = None
) -> tuple[dict, list[Path]]:
    """Build and write the report of a downloaded job result; returns the report and the files written.

    ``audit``: the privacy audit's results for the report's measured-attacks subsection (default:
    ``results/bench_privacy_attacks.json`` of the checkout; without one the subsection says how to
    make it).

    The files: ``report.json``, ``report.md``, ``model_card.md`` and ``model_card.json``, the plots,
    the missingness heat map where the job aligned EHR features (``ehr_schema.json`` in the result),
    and the sites' TensorBoard curves (``tb_events/``) where the run streamed them.
    """
    result = read_job_result(folder)
    report = build_report(
        result.job,
        result.record,
        result.cross,
        client_config=result.client_config,
        server_config=result.server_config,
        audit=audit,
    )
    if result.schema is not None:
        report["alignment"] = alignment_section(result.schema)
    paths = write_report(report, out_dir, seconds)
    card = build_model_card(report, client_config=result.client_config, server_config=result.server_config)
    paths += write_model_card(card, Path(out_dir))
    tb = copy_tensorboard(result.folder, Path(out_dir))
    return report, paths + ([tb] if tb else [])


def copy_tensorboard(result: Path, out_dir: Path) -> Path | None:
    """Copy the server's TensorBoard event files (per-site curves) next to the report."""
    found = sorted(Path(result).rglob(TB_DIR))
    if not found:
        return None
    target = Path(out_dir) / TB_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(found[0], target)
    return target


def summary_text(report: dict) -> str:
    """What the console shows of a report: site table, averages, flags, the gate and failed sites."""
    g = report["global"]
    lines = [site_table(report), ""]
    if g.get("client_avg_accuracy") is not None:
        lines.append(
            f"client-average accuracy {g['client_avg_accuracy']:.3f}, "
            f"worst site {g['worst_site_accuracy']:.3f}"
        )
    flagged = [s["name"] for s in report["sites"] if s.get("flagged")]
    lines.append(f"flagged sites: {', '.join(flagged) if flagged else 'none'}")
    gate = report.get("gate") or {}
    per_finding = report.get("per_finding")
    if gate:
        name = "any-finding gate, information only" if per_finding else "deployment gate"
        lines.append(
            f"{name} ({gate['metric']} lower 95% bound >= {gate['threshold']} at every site): "
            f"{gate['decision']} (deciding site: {gate['deciding_site']})"
        )
    if per_finding:
        lines.append(decision_line(per_finding))
    positive = report.get("positive_class")
    if positive:
        lines.append(f"positive class of sensitivity and specificity: {positive['name']}")
    if not gate:
        lines.append(f"deployment decision: {report['deploy_decision']} (no site validated the final model)")
    divergence = report.get("divergence") or {}
    if divergence.get("diverging"):
        lines.append(f"WARNING: {divergence['message']}")
    alignment = report.get("alignment")
    if alignment:
        lines.append(
            f"feature alignment: {alignment['kept']} features kept, {alignment['dropped']} dropped; "
            f"{len(alignment['lacks'])} site gaps listed in report.md; heat map {alignment['heatmap']}"
        )
    if report.get("status") == "aborted":
        lines.append(f"the run was aborted: {report.get('abort_reason')}")
    if report.get("failures"):
        lines += ["failed sites:", *(failure_line(f) for f in report["failures"])]
    return "\n".join(lines)
