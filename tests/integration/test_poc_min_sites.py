"""Fewer sites than the job's minimum: the job stops within a bounded time, with the last model saved.

Real FLARE processes in POC mode. The job copy needs all 4 sites (``meta.json`` ``min_clients`` and
ScatterAndGather ``min_clients``) with a per-round deadline ``train_timeout``; one site is killed.

What FLARE 2.9.0 does (read in ``scatter_and_gather.py`` and ``wf_comm_server.py``, seen here):

- ``train_timeout`` does not stop the job. When fewer than ``min_clients`` answered by the deadline
  the train task ends ``TaskCompletionStatus.TIMEOUT`` and ScatterAndGather aggregates the results
  that did arrive (3 of 4) and goes on to the next round.
- The stop comes from the job's ``meta.json`` ``min_clients``: after the server's
  ``heart_beat_timeout`` (``local/resources.json``; POC default 600 s, here 30 s) the site is
  reported dead, after the job's ``dead_client_grace_period`` (top-level key of
  ``config_fed_server.json``; default 60 s, here 5 s) it is "deemed disconnected", and the server
  logs ``Alive clients 3 < required min 4`` and panics with ``Aborting job due to deployment policy
  violation``: the job ends ``FINISHED:EXECUTION_EXCEPTION``. Both messages are only in the server
  log (``log.txt`` and ``error_log.txt`` of the downloaded result), not in the job meta.
- ScatterAndGather persists the global model after every completed round, so
  ``app_server/FL_global_model.pt`` is the model of the last completed round.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch

from fedhealth.constants import EHR_SCHEMA_FILE, HEART_DATASET_DIR
from fedhealth.reports.run_report import find_run_files
from fedhealth.tasks.base import SiteContext
from fedhealth.tasks.tabular import TabularTask
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.drills import set_heartbeat_timeout
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.variants import heart_poc, job_variant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 8
DROPPED = "switzerland"
KILL_AFTER_ROUNDS = 2
TRAIN_TIMEOUT = 20
HEART_BEAT_TIMEOUT = 30
DEAD_CLIENT_GRACE = 5
# Detection (heartbeat timeout + grace) plus at most one round deadline and a margin for this machine.
STOP_BOUND_S = HEART_BEAT_TIMEOUT + DEAD_CLIENT_GRACE + TRAIN_TIMEOUT + 30


def _global_loss(model_file: Path, site_kit: Path, job: Path, schema: dict) -> float:
    """The test loss at a site of the saved global model, as the site's executor computes it.

    The site's rows are rebuilt from what it holds (its export and ``mapping.json`` in its kit) and
    encoded under the schema the server aligned (``ehr_schema.json`` of the result).
    """
    weights = torch.load(model_file, weights_only=False)["model"]
    args = json.loads((job / "app" / "config" / "config_fed_client.json").read_text())["executors"][0]
    task_args = args["executor"]["args"]["task_args"]
    assert task_args["dataset"] == HEART_DATASET_DIR
    task = TabularTask(dictionary=task_args["dictionary"], dataset=task_args["dataset"])
    site = task.load_site(SiteContext(name=site_kit.name, site_root=site_kit, settings={}))
    site.set_schema(schema, save=False)
    return float(site.evaluate(task.model_from_weights(weights, site), site.round_split)["loss"])


def test_too_few_sites_stops_the_job_with_the_last_completed_rounds_model(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    set_heartbeat_timeout(layout, HEART_BEAT_TIMEOUT)
    with PocProcesses(layout, workspace / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
            job = job_variant(
                ROOT / "jobs" / "heart_fedprox",
                tmp_path / "jobs" / "heart_fedprox",
                rounds=ROUNDS,
                min_sites=4,
                train_timeout_s=TRAIN_TIMEOUT,
                cse_timeout_s=20,
                dead_client_grace_s=DEAD_CLIENT_GRACE,
            )
            job_id = admin.submit(job, workspace / "submit")
            deadline = time.monotonic() + 120
            while (admin.progress(job_id).get("current_round") or 0) < KILL_AFTER_ROUNDS:
                assert time.monotonic() < deadline, "the job never reached the round to kill at"
                time.sleep(0.3)
            procs.kill(DROPPED)
            killed = time.monotonic()
            status = admin.follow(job_id, on_progress=lambda p: None, check=procs.check_alive, timeout=240)
            stopped_after = time.monotonic() - killed
            meta = admin.session.get_job_meta(job_id)
            result = admin.download(job_id, workspace / "downloads")

    assert status == "FINISHED:EXECUTION_EXCEPTION"
    assert meta["status"] == status
    assert stopped_after < STOP_BOUND_S, f"the job took {stopped_after:.0f} s to stop"

    server_log = next(result.rglob("log.txt")).read_text()
    error_log = next(result.rglob("error_log.txt")).read_text()
    for message in (
        f"Client {DROPPED} is deemed disconnected!",
        "Alive clients 3 < required min 4",
        "Aborting job due to deployment policy violation",
    ):
        assert message in server_log and message in error_log, message
    finished = [int(n) for n in re.findall(r"ScatterAndGather .* Round (\d+) finished\.", server_log)]
    assert finished == list(range(len(finished))) and KILL_AFTER_ROUNDS <= len(finished) < ROUNDS
    assert f"Exiting at round {len(finished)}." in server_log  # the abort came in the next round
    # The deadline let at least one round through with the 3 sites that answered (FLARE's semantics).
    assert "task train exit with status TaskCompletionStatus.TIMEOUT" in server_log

    record, _ = find_run_files(result)
    # fedhealth's run record says the job was aborted, why, and which site went away.
    assert record["status"] == "aborted"
    assert "deployment policy" in record["abort_reason"] and record["abort_round"] == len(finished)
    assert [d["site"] for d in record["disconnected"]] == [DROPPED]
    reported = {r["round"]: sorted(r["sites"]) for r in record["rounds"]}
    short_rounds = [n for n in finished if DROPPED not in reported[n]]
    assert short_rounds and all(len(reported[n]) == 3 for n in short_rounds)

    # The saved global model is the last completed round's: the sites that began the aborted round
    # evaluated exactly that model when they received it (``global_loss`` in the record).
    model_file = next(result.rglob("FL_global_model.pt"))
    aborted = next(r for r in record["rounds"] if r["round"] == len(finished))
    schema = json.loads(next(result.rglob(EHR_SCHEMA_FILE)).read_text())
    assert aborted["sites"], "no site reported in the aborted round"
    for site, metrics in aborted["sites"].items():
        loss = _global_loss(model_file, layout.kit(site), job, schema)
        assert loss == pytest.approx(metrics["global_loss"], rel=1e-4, abs=1e-6), site
    print(
        f"\nstopped {stopped_after:.1f} s after the kill; completed rounds {finished}, "
        f"rounds with 3 sites {short_rounds}; aborted in round {len(finished)}"
    )
