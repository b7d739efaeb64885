"""Resuming a job the server lost (FLARE 2.9 does not resume a job after a server restart).

The lost job's downloaded result holds its run record (which rounds completed) and the global
model saved after the last completed round. :func:`resume_job` builds a copy of the job that starts
from that model at the next round and runs only the remaining rounds; :func:`merge_records` joins
the two records into one, each round counted once. The resume job ships the checkpoint as data in
its app folder (``model/``, loaded by FLARE's ``PTFileModelPersistor`` through
``config/environment.json``), no code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fedhealth.reports.run_record import RunRecord

RESUME_MODEL = "model/resume_model.pt"
ENVIRONMENT_FILE = "config/environment.json"


def last_completed_round(record: RunRecord) -> int:
    """The last round whose aggregated model was saved.

    Raises:
        ValueError: when no round completed (start the job again instead).
    """
    done = [r for r in record.get("completed_rounds", []) if r is not None]
    if not done:
        raise ValueError("The lost job completed no round; submit it again from the start instead.")
    return max(done)


def resume_job(src_job: Path, dest: Path, *, record: RunRecord, model_file: Path) -> Path:
    """A copy of ``src_job`` that continues after the last completed round of ``record``.

    Raises:
        ValueError: no round completed, the model file is missing, or nothing is left to run.
    """
    model_file = Path(model_file)
    if not model_file.is_file():
        raise ValueError(f"The lost job's model {model_file} is missing; it cannot be resumed.")
    start = last_completed_round(record) + 1
    dest = Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src_job, dest, ignore=shutil.ignore_patterns(".__nvfl_*"))
    server = dest / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    total = None
    for workflow in config["workflows"]:
        args = workflow["args"]
        if "num_rounds" in args:
            total = args.get("start_round", 0) + args["num_rounds"]
            if start >= total:
                raise ValueError(f"All {total} rounds completed already; nothing to resume.")
            args.update(start_round=start, num_rounds=total - start)
    server.write_text(json.dumps(config, indent=2))
    (dest / "app" / RESUME_MODEL).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(model_file, dest / "app" / RESUME_MODEL)
    (dest / "app" / ENVIRONMENT_FILE).write_text(json.dumps({"APP_CKPT": RESUME_MODEL}))
    return dest


def merge_records(lost: dict, resumed: dict) -> dict:
    """One record for the whole training: the lost job's completed rounds, then the resumed ones.

    Raises:
        ValueError: when the two records overlap (a round would be counted twice).
    """
    cut = last_completed_round(lost)
    first = [r for r in lost.get("rounds", []) if r.get("round", -1) <= cut and r.get("sites")]
    second = [r for r in resumed.get("rounds", []) if r.get("round", -1) > cut and r.get("sites")]
    rounds = first + second
    numbers = [r["round"] for r in rounds]
    if len(numbers) != len(set(numbers)):
        raise ValueError(f"Rounds {sorted(n for n in set(numbers) if numbers.count(n) > 1)} appear twice.")
    merged = dict(resumed)
    merged.update(
        rounds=rounds,
        completed_rounds=[n for n in lost.get("completed_rounds", []) if n <= cut]
        + list(resumed.get("completed_rounds", [])),
        failures=lost.get("failures", []) + resumed.get("failures", []),
        rejected_updates=lost.get("rejected_updates", []) + resumed.get("rejected_updates", []),
        late_results=lost.get("late_results", []) + resumed.get("late_results", []),
        resumed_from={"job_id": lost.get("job_id"), "after_round": cut},
    )
    return merged
