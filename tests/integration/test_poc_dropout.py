"""A hospital drops out mid-job (its processes killed): the job finishes with the others.

Real FLARE processes in POC mode. The job copy asks for 3 of 4 sites per round and bounded waits,
so a dead site costs a few seconds a round instead of stalling the federation; the report marks
the rounds the site missed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.poc.drills import run_drill, set_heartbeat_timeout
from fedhealth_tools.poc.variants import heart_poc, job_variant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5
DROPPED = "switzerland"
KILL_AT_ROUND = 2


def test_a_site_killed_mid_job_is_marked_missing_and_the_job_completes(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    set_heartbeat_timeout(layout, 30)
    job = job_variant(
        ROOT / "jobs" / "heart_fedprox",
        tmp_path / "jobs" / "heart_fedprox",
        rounds=ROUNDS,
        min_sites=3,
        wait_after_min_s=3,
        cse_timeout_s=20,
    )
    drill = run_drill(
        layout, job, workspace=workspace, kill_site=DROPPED, kill_at_round=KILL_AT_ROUND, rejoin=True
    )
    assert drill.status == "FINISHED:COMPLETED"
    assert drill.rejoined is True  # started again from its kit, it is back in the federation
    record, cross = find_run_files(drill.result)
    report = build_report("heart_fedprox", record, cross)
    assert report["rounds"] == ROUNDS
    dropped = report["participation"][DROPPED]
    assert dropped["missed_rounds"] and min(dropped["missed_rounds"]) >= KILL_AT_ROUND
    assert dropped["missed_rounds"] == list(range(min(dropped["missed_rounds"]), ROUNDS))
    for site in set(layout.sites) - {DROPPED}:
        assert report["participation"][site]["rate"] == 1.0
    # The others still validated the final global model; the dropped site could not.
    assert DROPPED not in cross or not cross[DROPPED]
    assert len([s for s in report["sites"] if s.get("deploy")]) == 3
