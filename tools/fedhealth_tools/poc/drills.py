"""Fault drills on a running POC federation: kill a site mid-job, then follow the job to its end."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fedhealth.reports.run_record import RunRecord
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.workspace import PocError, PocLayout


def set_heartbeat_timeout(layout: PocLayout, seconds: int) -> None:
    """How long the server waits before declaring a silent site dead (POC kits: 600 s).

    FLARE keeps a job open until every site has ended it or is declared dead, so a killed site
    holds the job this long after its last round.
    """
    path = layout.kit(layout.server) / "local" / "resources.json"
    resources = json.loads(path.read_text())
    for server in resources.get("servers", []):
        server["heart_beat_timeout"] = seconds
    path.write_text(json.dumps(resources, indent=2))


@contextmanager
def _submitted(layout: PocLayout, procs: PocProcesses, job_dir: Path, workspace: Path):
    """Start the federation, log in as the project admin and submit ``job_dir``.

    Yields the admin session, the job id and the submission time (``time.monotonic``).
    """
    procs.start()
    with AdminClient(layout) as admin:
        admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
        start = time.monotonic()
        yield admin, admin.submit(job_dir, workspace / "submit"), start


def _wait_for_round(admin: AdminClient, job_id: str, round_index: int, timeout: float) -> None:
    """Block until the job's server reports round ``round_index`` started."""
    deadline = time.monotonic() + timeout
    while (admin.progress(job_id).get("current_round") or 0) < round_index:
        if time.monotonic() > deadline:
            raise PocError(f"job {job_id} never reached round {round_index}")
        time.sleep(0.3)


@dataclass(frozen=True)
class DrillResult:
    """How a drilled job ended: status, downloaded result, wall time, whether the killed site rejoined."""

    status: str
    result: Path
    seconds: float
    rejoined: bool | None = None
    record: RunRecord | None = None  # set when the run record is not the downloaded one (a resumed job)


def run_drill(
    layout: PocLayout,
    job_dir: Path,
    *,
    workspace: Path,
    kill_site: str | None = None,
    kill_at_round: int = 2,
    rejoin: bool = False,
    timeout: float = 300.0,
) -> DrillResult:
    """Run ``job_dir``; optionally kill ``kill_site`` once round ``kill_at_round`` has started.

    With ``rejoin``, the killed site is started again from its kit after the job and must connect
    to the federation again (ready for the next job).
    """
    with (
        PocProcesses(layout, workspace / "logs") as procs,
        _submitted(layout, procs, job_dir, workspace) as (admin, job_id, start),
    ):
        if kill_site:
            _wait_for_round(admin, job_id, kill_at_round, timeout)
            procs.kill(kill_site)
        status = admin.follow(job_id, on_progress=lambda p: None, check=procs.check_alive, timeout=timeout)
        seconds = time.monotonic() - start
        result = admin.download(job_id, workspace / "downloads" / job_id)
        rejoined = None
        if kill_site and rejoin:
            procs.start_participant(kill_site)
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            rejoined = True
    return DrillResult(status, result, seconds, rejoined)


def run_restart_drill(
    layout: PocLayout, job_dir: Path, *, workspace: Path, kill_after_round: int = 3, timeout: float = 300.0
) -> DrillResult:
    """Kill the server (SIGKILL) once round ``kill_after_round`` has started, restart it, resume.

    FLARE 2.9 loses the job; the server operator's copy of its run folder gives the record and the
    last completed round's model, and :func:`fedhealth_tools.poc.resume.resume_job` runs the rest.
    The returned record is the merged one (every round once).
    """
    from fedhealth.constants import RUN_RECORD_FILE
    from fedhealth.reports.run_report import find_run_files
    from fedhealth_tools.poc.resume import merge_records, resume_job

    with PocProcesses(layout, workspace / "logs") as procs:
        with _submitted(layout, procs, job_dir, workspace) as (admin, job_id, start):
            _wait_for_round(admin, job_id, kill_after_round, timeout)
        procs.restart(layout.server)
        run_dir = layout.kit(layout.server) / job_id
        lost = json.loads((run_dir / RUN_RECORD_FILE).read_text())
        resumed = resume_job(
            job_dir,
            workspace / "resumed" / Path(job_dir).name,
            record=lost,
            model_file=run_dir / "app_server" / "FL_global_model.pt",
        )
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            resumed_id = admin.submit(resumed, workspace / "submit")
            status = admin.follow(
                resumed_id, on_progress=lambda p: None, check=procs.check_alive, timeout=timeout
            )
            seconds = time.monotonic() - start
            result = admin.download(resumed_id, workspace / "downloads" / resumed_id)
    record, _ = find_run_files(result)
    return DrillResult(status, result, seconds, record=merge_records(lost, record))
