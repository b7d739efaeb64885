"""``fedhealth status JOB``: a job's status and, for a failed one, which site failed and why.

Asks the server as the POC project admin (FLARE API ``get_job_meta``), downloads the finished
job's result (``download_job_result``, kept under ``<workspace>/downloads/<job id>``) and reads
fedhealth's run record: every failed site with its reason. A site's own log stays at the site; in
POC the sites' kits are on this machine, so the root exception of each site's ``error_log.txt`` is
shown too.
"""

from __future__ import annotations

import re
from pathlib import Path

from fedhealth.reports.run_report import failure_line, find_run_files
from fedhealth_tools.poc.admin import FINISHED, AdminClient
from fedhealth_tools.poc.workspace import PocError, PocLayout, read_project

COMPLETED = "FINISHED:COMPLETED"
MAX_LOG_LINE = 300
EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception): ")  # e.g. "TypeError: ... unexpected keyword"


def poc_layout(project_file: Path, workspace: Path) -> PocLayout:
    """The layout of an already provisioned POC workspace (``fedhealth up`` made it)."""
    info = read_project(project_file)
    root = (Path(workspace) / "poc").resolve()
    layout = PocLayout(
        root, root / info["name"] / "prod_00", info["server"], info["admin"], info["sites"], info["port"]
    )
    if not (layout.kit(layout.admin) / "startup").is_dir():
        raise PocError(f"no POC workspace in {root}: start the federation with fedhealth up first")
    return layout


def job_status(layout: PocLayout, job_id: str, downloads: Path) -> str:
    """The status lines of ``job_id``: its status, failed sites with reasons, where the logs are."""
    with AdminClient(layout) as admin:  # the session is closed on the way out, also on an error
        try:
            meta = admin.session.get_job_meta(job_id)
        except Exception as exc:  # FLARE raises its own types for an unknown job id
            raise PocError(f"the server knows no job {job_id}: {exc}") from exc
        status = str(meta.get("status", "UNKNOWN"))
        lines = [f"job {job_id} ({meta.get('name', '?')}): {status}"]
        if not status.startswith(FINISHED):
            return "\n".join(lines)
        result = admin.download(job_id, downloads)
    try:
        record, _ = find_run_files(result)
    except (FileNotFoundError, ValueError) as exc:
        return "\n".join([*lines, f"no run record: {exc}"])
    if record.get("status") == "aborted":
        lines.append(f"the run was aborted: {record.get('abort_reason')}")
    failures = record.get("failures", [])
    if failures:
        lines += ["failed sites:", *(failure_line(f) for f in failures)]
    elif status != COMPLETED:
        lines.append("no site reported a reason")
    logs = site_error_lines(layout, job_id)
    if logs and status != COMPLETED:
        lines += ["the sites' own error logs (POC: the kits are on this machine):"]
        lines += [f"- {site}: {line}" for site, line in logs.items()]
    lines.append(f"result: {result}")
    return "\n".join(lines)


def site_error_lines(layout: PocLayout, job_id: str) -> dict[str, str]:
    """Each POC site's first exception line in its ``error_log.txt`` of the job (the root cause of a
    traceback chain; else the last line), for the sites that have one."""
    found = {}
    for site in layout.sites:
        path = layout.kit(site) / job_id / "error_log.txt"
        if not path.is_file():
            continue
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        causes = [line for line in lines if EXCEPTION_LINE.match(line)]
        if lines:
            found[site] = f"{(causes or lines[-1:])[0][:MAX_LOG_LINE]} ({path})"
    return found
