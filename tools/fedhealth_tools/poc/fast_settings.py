"""The FLARE settings that make a round lean, what the kit's jobs ship with, and FLARE's stock values.

Measured in POC and in simulation (``make bench-scale``); each saves idle time in every round:

* ``server.task_request_interval`` (server, stock 2 s): how long a site waits before asking again
  after a task or an empty answer. Sites learn of the next round this late.
* ``task_check_period`` of ``ScatterAndGather`` (stock 0.5 s): how often the server's controller
  checks whether the round's results are in; a round ends up to two periods after its last result.
* ``np_download_chunk_size`` = 0 (server and client app config; stock 2 MiB): numpy arrays travel
  inside the task message instead of as a reference the receiver then downloads in chunks. One
  message instead of a message plus a download transaction; with a hundred clients in one process it
  also avoids exhausting FLARE's shared streaming thread pools.
  Measured on a quiet machine, inline is slower than the chunked download at 10M weights (round
  overhead 3.02 s vs 2.66 s): for models of millions of weights keep FLARE's default chunk size.

``wait_time_after_min_received`` is not one of them: FLARE's broadcast ends as soon as every target
site has answered (``BcastTaskManager.check_task_exit`` in ``nvflare/apis/impl/bcast_manager.py``),
so the wait only runs when a site is slow or missing. The shipped jobs take it, with ``min_clients``
and ``train_timeout``, from their family's ``federation`` block (``job_specs/README.md``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SCATTER_AND_GATHER = "nvflare.app_common.workflows.scatter_and_gather.ScatterAndGather"
SERVER_SECTION = {"task_request_interval": 0.2}
WORKFLOW_ARGS = {"task_check_period": 0.05}
APP_VARS = {"np_download_chunk_size": 0}
STOCK = {"task_request_interval": 2.0, "task_check_period": 0.5, "np_download_chunk_size": 2 * 1024 * 1024}


def _configs(job: Path) -> tuple[list[Path], list[Path]]:
    job = Path(job)
    return sorted(job.glob("app*/config/config_fed_server.json")), sorted(
        job.glob("app*/config/config_fed_client.json")
    )


def fast_settings_missing(job: Path) -> list[str]:
    """What the job's configs lack of the fast settings, one line each (empty: the job is fast)."""
    servers, clients = _configs(job)
    if not servers or not clients:
        return [f"{Path(job).name}: no app config found"]
    missing = []
    for path in servers:
        config = json.loads(path.read_text())
        where = f"{path.parent.parent.name}/config/{path.name}"
        for key, value in SERVER_SECTION.items():
            if config.get("server", {}).get(key) != value:
                missing.append(f"{where}: server.{key} should be {value}")
        for key, value in APP_VARS.items():
            if config.get(key) != value:
                missing.append(f"{where}: {key} should be {value}")
        for workflow in config.get("workflows", []):
            if workflow.get("path") == SCATTER_AND_GATHER:
                for key, value in WORKFLOW_ARGS.items():
                    if workflow["args"].get(key) != value:
                        missing.append(f"{where}: ScatterAndGather {key} should be {value}")
    for path in clients:
        config = json.loads(path.read_text())
        for key, value in APP_VARS.items():
            if config.get(key) != value:
                missing.append(f"{path.parent.parent.name}/config/{path.name}: {key} should be {value}")
    return missing


def stock_variant(src: Path, dest: Path) -> Path:
    """A copy of the job with FLARE's stock values instead of the fast settings (the baseline)."""
    dest = Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest)
    servers, clients = _configs(dest)
    for path in servers + clients:
        config = json.loads(path.read_text())
        for key in APP_VARS:
            config.pop(key, None)
        for key in SERVER_SECTION:
            config.get("server", {}).pop(key, None)
        for workflow in config.get("workflows", []):
            if workflow.get("path") == SCATTER_AND_GATHER:
                workflow["args"].pop("task_check_period", None)
        path.write_text(json.dumps(config, indent=2))
    return dest
