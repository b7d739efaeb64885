"""The FLARE server is killed (SIGKILL) mid-job and started again from its kit: what happens.

Real FLARE processes in POC mode. FLARE 2.9.0 does not resume a job after a server restart:
``ServerEngine.persist_components`` is a no-op ("Component snapshot persistence has been removed"),
so ScatterAndGather's per-round snapshot is never written (the POC ``snapshot-storage`` folder stays
empty although ``local/resources.json`` configures a ``snapshot_persistor``), and
``JobRunner.restore_running_job`` has no caller. No setting in ``resources.json`` or the job config
turns it back on. Observed: the sites reconnect within seconds, the server tells them to abort the
job ("Received command to abort job" in each site's log, "Dropped terminal outcome for untracked
job/client" in the server's), and the job stays ``RUNNING`` in the job store with no process behind
it. Its server run folder keeps the last completed round's record and global model, from which a
new job can continue. These tests pin that behaviour, so a FLARE upgrade that restores resuming
makes them fail and this kit can rely on it. Then fedhealth resumes the job itself
(``fedhealth_tools.poc.resume``). FLARE 2.9 refuses both to abort the stale job ("is not running") and to
download it ("still running"), so the record and the last model come from the server's run folder
(the server operator's copy); a job copy starts after the last completed round from that model,
and every round is counted once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest
from nvflare.private.fed.server.server_engine import ServerEngine

from fedhealth.constants import RUN_RECORD_FILE
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.resume import last_completed_round, merge_records, resume_job
from fedhealth_tools.poc.variants import heart_poc, job_variant

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 8
KILL_AFTER_ROUNDS = 4  # rounds 0..3 completed when the server is killed
STALE_WATCH_S = 20.0  # how long the test watches the job after the sites' job processes ended


def _site_job_processes(job_id: str) -> list[int]:
    """The sites' job processes (FLARE's client worker process) of ``job_id`` still alive."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if "nvflare.private.fed.app.client.worker_process" in cmd and job_id in cmd:
            found.append(proc.pid)
    return found


def _completed_rounds(record_path: Path) -> list[int]:
    record = json.loads(record_path.read_text())
    return [r["round"] for r in record["rounds"]]


def test_flare_2_9_writes_no_server_snapshot() -> None:
    """The root cause, without a federation: the snapshot hook ScatterAndGather calls does nothing."""
    engine = object.__new__(ServerEngine)  # no attributes at all: any real work would raise
    assert engine.persist_components(None, completed=False) is None


@pytest.mark.slow
def test_server_restart_loses_the_job_in_flare_and_fedhealth_resumes_it(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    server_kit = layout.kit(layout.server)
    with PocProcesses(layout, workspace / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            job_id = admin.submit(
                job_variant(
                    ROOT / "jobs" / "heart_fedprox", tmp_path / "jobs" / "heart_fedprox", rounds=ROUNDS
                ),
                workspace / "submit",
            )
            deadline = time.monotonic() + 120
            while (admin.progress(job_id).get("current_round") or 0) < KILL_AFTER_ROUNDS:
                assert time.monotonic() < deadline, "the job never reached the round to kill at"
                time.sleep(0.3)
        run_dir = server_kit / job_id
        record_path = run_dir / RUN_RECORD_FILE
        model_path = run_dir / "app_server" / "FL_global_model.pt"
        assert _site_job_processes(job_id), "the sites should be running the job before the kill"

        killed = time.monotonic()
        procs.restart(layout.server)
        # The record is written after each round, so it holds exactly the completed rounds.
        before = _completed_rounds(record_path)
        model_before = model_path.read_bytes()
        assert before == list(range(len(before))) and len(before) >= KILL_AFTER_ROUNDS
        assert len(before) < ROUNDS

        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=60, check=procs.check_alive)
            reconnected = time.monotonic() - killed
            deadline = time.monotonic() + 60
            while _site_job_processes(job_id):  # the server tells each site to abort the job
                assert time.monotonic() < deadline, "the sites kept running the job after the restart"
                time.sleep(0.5)
            aborted_at_sites = time.monotonic() - killed
            # Nothing resumes: the job stays RUNNING with no server process behind it.
            watch_until = time.monotonic() + STALE_WATCH_S
            while time.monotonic() < watch_until:
                assert admin.status(job_id) == "RUNNING"
                assert admin.progress(job_id) == {}  # no server job process answers show_stats
                time.sleep(2.0)
            assert _site_job_processes(job_id) == []

            # fedhealth's resume. FLARE 2.9 refuses both abort_job ("is not running") and the download
            # ("still running") of the stale job, so the server's operator takes the record and the
            # last model from the server's run folder, and the admin submits the rest of the job.
            lost_record = json.loads(record_path.read_text())
            resumed_job = resume_job(
                tmp_path / "jobs" / "heart_fedprox",
                tmp_path / "jobs" / "heart_fedprox_resumed",
                record=lost_record,
                model_file=model_path,
            )
            resumed_id = admin.submit(resumed_job, workspace / "submit")
            status = admin.follow(
                resumed_id, on_progress=lambda p: None, check=procs.check_alive, timeout=240
            )
            assert status == "FINISHED:COMPLETED"
            resumed_record, cross = find_run_files(admin.download(resumed_id, workspace / "downloads"))
        merged = merge_records(lost_record, resumed_record)
        assert [r["round"] for r in merged["rounds"]] == list(range(ROUNDS))  # every round exactly once
        assert merged["completed_rounds"] == list(range(ROUNDS))
        assert min(r["round"] for r in resumed_record["rounds"]) == last_completed_round(lost_record) + 1
        # The resumed job started from the saved model, not from scratch: its first round's received
        # model scores like the lost job's last model, far from the untrained start.
        first = min(resumed_record["rounds"], key=lambda r: r["round"])
        assert first["global_accuracy"] > lost_record["rounds"][0]["global_accuracy"] + 0.1
        report = build_report("heart_fedprox", merged, cross)
        assert report["rounds"] == ROUNDS and len(report["sites"]) == 4
        print(
            f"\nserver killed after rounds {before}; sites reconnected after {reconnected:.1f} s, "
            f"their job processes ended after {aborted_at_sites:.1f} s; job still RUNNING "
            f"{time.monotonic() - killed:.1f} s after the kill"
        )

    # No round was run (or counted) after the kill: the run folder is as the killed server left it.
    assert _completed_rounds(record_path) == before
    assert model_path.read_bytes() == model_before
    assert json.loads(record_path.read_text())["status"] == "running"  # END_RUN never came
    # FLARE never wrote a snapshot to resume from, although POC configures the persistor.
    resources = json.loads((server_kit / "local" / "resources.json").read_text())
    snapshot_dir = Path(resources["snapshot_persistor"]["args"]["storage"]["args"]["root_dir"])
    assert not snapshot_dir.exists() or not any(snapshot_dir.rglob("*"))
    for site in layout.sites:
        assert "Received command to abort job" in (workspace / "logs" / f"{site}.log").read_text()
    server_log = (workspace / "logs" / "server.log").read_text()
    assert f"Dropped terminal outcome for untracked job/client {job_id}/" in server_log
