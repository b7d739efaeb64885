"""SecAgg+ in FLARE POC mode: real server and site processes, provisioned certificates, a site killed.

``heart_secagg`` with a hospital's processes killed once round 2 has started: the round is unmasked
from the other sites' shares (the dead site's masks recovered if it had not sent its masked update),
the next rounds run on a new key epoch without it, and the job completes with a model as good as
FedAvg's. Every update the server received was a masked ring vector; the sites logged sending them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fedhealth import constants as C
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.poc.drills import run_drill, set_heartbeat_timeout
from fedhealth_tools.poc.variants import heart_poc, job_variant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 5
DROPPED = "switzerland"
KILL_AT_ROUND = 2


def _secagg_variant(tmp_path: Path) -> Path:
    job = job_variant(
        ROOT / "jobs" / "heart_secagg",
        tmp_path / "jobs" / "heart_secagg",
        rounds=ROUNDS,
        min_sites=3,
        train_timeout_s=20,
        cse_timeout_s=20,
    )
    server = job / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    for workflow in config["workflows"]:
        if workflow["path"].endswith("SecAggController"):
            workflow["args"]["protocol_timeout"] = 15  # a dead site costs this once, at the new key epoch
    server.write_text(json.dumps(config, indent=2))
    return job


def test_secagg_survives_a_site_killed_mid_job(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    set_heartbeat_timeout(layout, 30)
    drill = run_drill(
        layout, _secagg_variant(tmp_path), workspace=workspace, kill_site=DROPPED, kill_at_round=KILL_AT_ROUND
    )
    assert drill.status == "FINISHED:COMPLETED"
    log = next(drill.result.rglob("log.txt")).read_text()
    unmasked = re.findall(r"round (\d+): unmasked the sum of (\d+) sites \(([^)]*)\)", log)
    assert [int(r) for r, _, _ in unmasked] == list(range(ROUNDS))  # every round unmasked, none failed
    assert all(int(n) == 4 for r, n, _ in unmasked if int(r) < KILL_AT_ROUND)
    after = [names for r, _, names in unmasked if int(r) > KILL_AT_ROUND]
    assert after and all(DROPPED not in names for names in after)
    epochs = re.findall(r"key epoch (\d+): (\d+) sites, threshold (\d+)", log)
    assert epochs[0] == ("1", "4", "2")
    assert "SecAgg+ round" not in log  # no round failed
    if re.search(rf"recovered the masks of \['{DROPPED}'\]", log):  # killed before its masked update
        assert ("2", "3", "2") in epochs  # its mask key is known: a new epoch without it
    record, cross = find_run_files(drill.result)
    report = build_report("heart_secagg", record, cross)
    assert report["rounds"] == ROUNDS
    accuracies = [s["accuracy"] for s in report["sites"] if s["name"] != DROPPED]
    assert len(accuracies) == 3 and min(accuracies) > 0.7  # the unmasked averages trained a real model
    # The sites sent masked ring vectors (30 values + the weight), never weights.
    site_logs = [p for p in workspace.rglob("log.txt") if C.HEART_SITES[0] in str(p)]
    text = "".join(p.read_text() for p in site_logs)
    assert re.search(r"round 0: update norm [0-9.e-]+; sent masked \(\d+ values of 40 bits\)", text)
