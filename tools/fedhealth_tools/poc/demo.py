"""``fedhealth demo``: a four-hospital federation in FLARE POC mode, end to end, for any shipped job.

Prepares a POC workspace inside the checkout (or reuses the one made from the same project file),
gives each hospital its own data of the task the job names (its table export and mapping, or chest
X-rays converted to DICOM; :mod:`fedhealth_tools.poc.task_data`), starts the real server and client
processes, submits the job as the project admin through the FLARE API, shows live progress,
downloads the result, prints the per-site table and writes the report (the same one ``fedhealth
report`` writes for any downloaded job result). Every process it started is stopped on the way out,
also on an error or Ctrl-C.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from fedhealth.constants import TB_DIR
from fedhealth.reports.job_result import report_job_result, summary_text
from fedhealth.reports.run_report import find_run_files
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.status import site_error_lines
from fedhealth_tools.poc.task_data import DEMO_IMAGES, place_task_data
from fedhealth_tools.poc.workspace import PocError, PocLayout, prepare_workspace


def _job_rounds(job_dir: Path) -> int:
    config = json.loads((job_dir / "app" / "config" / "config_fed_server.json").read_text())
    for wf in config.get("workflows", []):
        for key in ("num_rounds", "num_versions"):  # an asynchronous workflow's versions are its rounds
            if key in wf.get("args", {}):
                return int(wf["args"][key])
    return 0


def run_demo(
    *,
    job_dir: Path,
    project_file: Path,
    workspace: Path,
    results_dir: Path,
    timeout: float = 900.0,
    fresh: bool = False,
    images: int = DEMO_IMAGES,
) -> dict:
    """Provision (or reuse the workspace), place the data, run one job in POC mode and write its report.

    Returns the report. ``fresh`` deletes an existing POC workspace and provisions a new one; without
    it a workspace made from the same project file is kept (sites' settings, downloaded results).
    ``images``: chest X-ray images per split over all sites, for jobs whose task is ``dicom``.

    Raises:
        PocError: a step failed; the message says which and why.
    """
    start = time.monotonic()
    job_dir = Path(job_dir)
    if not (job_dir / "meta.json").is_file():
        raise PocError(f"{job_dir} is not a FLARE job folder (no meta.json)")
    print(f"[1/6] the POC workspace in {workspace} (certificates, allow-list, loopback)")
    layout = prepare_workspace(project_file, Path(workspace) / "poc", fresh=fresh)
    task, sizes = place_task_data(layout, job_dir, images=images)
    if task == "heart":
        print(f"[2/6] each hospital's own rows written into its own site (train+test): {sizes}")
    elif task == "tabular":
        print(f"[2/6] each hospital's own export and mapping written into its own site (train+test): {sizes}")
    else:
        print(f"[2/6] bundled PneumoniaMNIST as DICOM in each site, non-IID (train+val+test): {sizes}")
    result = run_job(layout, job_dir, workspace=Path(workspace), timeout=timeout)
    print("[6/6] all FLARE processes stopped; writing the report")
    seconds = time.monotonic() - start
    report, paths = report_job_result(result, results_dir, seconds=seconds)
    print()
    print(summary_text(report))
    tb = Path(results_dir) / TB_DIR
    if tb in paths:
        print(f"TensorBoard (per-site curves): tensorboard --logdir {tb}")
    print("report: " + ", ".join(str(p) for p in paths if p != tb))
    print(f"done in {seconds:.0f} s")
    return report


def run_job(layout: PocLayout, job_dir: Path, *, workspace: Path, timeout: float) -> Path:
    """Start the federation, run ``job_dir`` as the project admin, stop everything; returns the result folder.

    Raises:
        PocError: the federation did not start, or the job did not complete; the message names the
            failed sites and their reasons as the server recorded them.
    """
    with PocProcesses(layout, workspace / "logs") as procs:
        print(f"[3/6] starting the FLARE server (127.0.0.1:{layout.port}) and {len(layout.sites)} sites")
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            return run_on(
                admin, layout, job_dir, workspace=workspace, timeout=timeout, check=procs.check_alive
            )


def run_on(
    admin: AdminClient, layout: PocLayout, job_dir: Path, *, workspace: Path, timeout: float, check
) -> Path:
    """Run ``job_dir`` on a federation that is up (several jobs, one start); returns the result folder.

    Raises:
        PocError: the job did not complete; the message names the failed sites and their reasons.
    """
    downloads = workspace / "downloads"  # one folder per job id: earlier results are kept
    job_id = admin.submit(job_dir, workspace / "submit")
    print(f"[4/6] submitted {job_dir.name} as {layout.admin}: job {job_id}")
    status = _follow(admin, job_id, _job_rounds(job_dir), check, timeout)
    result = admin.download(job_id, downloads)
    if status != "FINISHED:COMPLETED":
        logs = admin.error_logs(job_id) or "; ".join(  # sites do not stream logs: read their kits (POC)
            f"{site}: {line}" for site, line in site_error_lines(layout, job_id).items()
        )
        raise PocError(_failure_message(job_id, status, result, logs))
    return result


def _failure_message(job_id: str, status: str, result: Path, logs: str) -> str:
    try:
        record, _ = find_run_files(result)
    except (FileNotFoundError, ValueError):
        record = {}
    failures = record.get("failures", [])
    reasons = "; ".join(f"{f['site']}: {f['reason']}" for f in failures)
    message = f"job {job_id} ended {status}"
    if record.get("abort_reason"):
        gone = ", ".join(d["site"] for d in record.get("disconnected", []))
        message += f" - aborted: {record['abort_reason']}" + (f" (disconnected: {gone})" if gone else "")
    if reasons:
        message += f" - failed sites: {reasons}"
    elif not record.get("abort_reason"):
        message += " - no site reported a reason"
    return message + (f" (site error logs: {logs})" if logs else "")


def _follow(admin: AdminClient, job_id: str, rounds: int, check, timeout: float) -> str:
    bar = tqdm(total=rounds, desc="[5/6] training", unit="round", dynamic_ncols=True)
    done = 0

    def show(progress: dict) -> None:
        nonlocal done
        if not progress:
            return
        current = progress.get("current_round")
        if current is not None and current > done:
            bar.update(current - done)
            done = current
        metric = progress.get("global_accuracy")
        bar.set_postfix(
            sites=len(progress.get("sites_reported", [])), acc="-" if metric is None else f"{metric:.3f}"
        )
        for failure in progress.get("failures", []):
            bar.write(f"site failed: {failure['site']}: {failure['reason']}")

    try:
        status = admin.follow(job_id, on_progress=show, check=check, timeout=timeout)
        if status == "FINISHED:COMPLETED":
            bar.update(rounds - done)
        return status
    finally:
        bar.close()
