"""The run record (``fedhealth_run.json``): one typed definition for its writer and its readers.

:class:`~fedhealth.widgets.run_recorder.RunRecorder` writes it into the server's run folder; the
report modules and ``fedhealth report``/``fedhealth status`` read it from a downloaded job result.
Aggregates only: no patient value is ever part of it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from fedhealth.constants import M_EVAL_SPLIT, M_IMAGES_PER_S, M_N_QUARANTINED, RUN_RECORD_FILE

RunStatus = Literal["running", "finished", "aborted"]

# A participant whose job never asked the server for a task: its job process did not start.
NEVER_STARTED = (
    "its job never asked the server for a task: the site's job process did not start or stopped at once "
    "(e.g. its executor could not be built from the job config). FLARE keeps the site's own reason in the "
    "site's log, <site workspace>/{job_id}/error_log.txt"
)


class Gate(TypedDict):
    """The deployment gate's settings (from the job config).

    ``finding_thresholds`` (finding -> threshold) exists only in the records of jobs that set it.
    """

    primary_metric: str
    threshold: float
    flag_sd: float
    finding_thresholds: NotRequired[dict[str, float]]


class Failure(TypedDict):
    """A site that failed: the task (None: no task ever ran), the round and the reason."""

    site: str
    task: str | None
    round: int | None
    reason: str


class LateResult(TypedDict):
    """A result that arrived after the server had closed its task (a slow site).

    ``round`` is the round it was computed for (None: a task outside the training rounds),
    ``during_round`` the round in progress when it arrived, ``used`` whether the workflow still
    counted it (ScatterAndGather hands a late train result to its aggregator, which takes it only
    for the round in progress), ``reason`` why it was dropped (empty when used).
    """

    site: str
    task: str
    round: int | None
    during_round: int | None
    used: bool
    reason: str


class RoundEntry(TypedDict, total=False):
    """One round: each site's metrics and the size-weighted summaries of ``round_summary``."""

    round: int
    sites: dict[str, dict[str, Any]]
    global_accuracy: float | None
    global_auc: float | None


class SampledRound(TypedDict, total=False):
    """One round's client sampling: the sites asked to train, those connected, the round's real rate."""

    round: int
    sampled: list[str]
    connected: list[str]
    rate: float
    short: bool
    min_responses: int


class Sampling(TypedDict, total=False):
    """A sampling workflow's plan (K of N, mode, planned q) and every round's draw."""

    mode: str
    k: int
    n: int
    rate: float
    seeded: bool
    rounds: list[SampledRound]


class RunRecord(TypedDict, total=False):
    """Everything the server keeps of a run, as written to ``fedhealth_run.json``."""

    job_id: str
    started: float
    ended: float
    status: RunStatus
    abort_reason: str
    abort_round: int | None
    current_round: int | None
    num_rounds: int | None
    start_round: int | None
    rounds: list[RoundEntry]
    failures: list[Failure]
    gate: Gate
    divergence: dict | None
    rejected_updates: list[dict]
    late_results: list[LateResult]
    sites: list[str]
    asked: list[str]
    tasks: list[str]
    disconnected: list[dict]
    completed_rounds: list[int]
    round_times: list[dict]
    update_privacy: list[dict]
    model: dict  # a tree job's model: family, trees, features, sha256, sites, file (TreeModelCollector)
    sampling: Sampling  # only a job whose workflow samples sites (SampledScatterAndGather)
    client_dp: list[dict]  # DP-FedAvg's ledger entries, one per released round (DPFedAvgAggregator)
    asynchronous: dict  # FedBuff: settings, each version's buffer (site, staleness), dropped/late results


def new_record(job_id: str, gate: Gate) -> RunRecord:
    """The record of a run that has just started."""
    return RunRecord(
        job_id=job_id,
        started=time.time(),
        status="running",
        current_round=None,
        num_rounds=None,
        rounds=[],
        failures=[],
        gate=gate,
        divergence=None,
        rejected_updates=[],
        late_results=[],
        sites=[],
        asked=[],
        tasks=[],
        disconnected=[],
        completed_rounds=[],
        round_times=[],
        update_privacy=[],
    )


def load_record(path: Path) -> RunRecord:
    """Read a run record; a file that is not a JSON object is an error naming the file."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a {RUN_RECORD_FILE} must hold a JSON object, not {type(data).__name__}")
    return RunRecord(**data)  # type: ignore[typeddict-item]


def eval_split(record: RunRecord) -> str | None:
    """The split the sites scored each round's received model on, as their metrics say.

    Records written before executors sent ``eval_split``: the imaging executor (its metrics carry
    images/s or a quarantine count) scored on ``val``, the heart executor on ``test``. None when no
    round was recorded, or the sites reported different splits.
    """
    splits = set()
    legacy = set()
    for rnd in record.get("rounds", []):
        for metrics in rnd.get("sites", {}).values():
            if metrics.get(M_EVAL_SPLIT):
                splits.add(str(metrics[M_EVAL_SPLIT]))
            else:
                imaging = M_IMAGES_PER_S in metrics or M_N_QUARANTINED in metrics
                legacy.add("val" if imaging else "test")
    found = splits or legacy
    return found.pop() if len(found) == 1 else None


def had_task(record: RunRecord, task: str) -> bool:
    """Whether any site answered ``task`` in this run."""
    return task in record.get("tasks", [])


def add_draw(record: RunRecord, draw: dict) -> None:
    """Keep a sampling workflow's draw of one round (its ``fedhealth.sites_sampled`` event data).

    The plan (mode, K, N, planned rate, seeded) comes with every draw and is kept once; a round
    drawn again (a resumed job) replaces its earlier draw.
    """
    sampling = record.setdefault("sampling", Sampling(rounds=[]))
    for key, source in (
        ("mode", "mode"),
        ("k", "k"),
        ("n", "n"),
        ("rate", "planned_rate"),
        ("seeded", "seeded"),
    ):
        if source in draw:
            sampling[key] = draw[source]
    entry = SampledRound(
        round=int(draw["round"]),
        sampled=sorted(draw.get("sampled", [])),
        connected=sorted(draw.get("connected", [])),
        rate=float(draw.get("rate", 0.0)),
        short=bool(draw.get("short", False)),
        min_responses=int(draw.get("min_responses", 0)),
    )
    rounds = [r for r in sampling.setdefault("rounds", []) if r.get("round") != entry["round"]]
    sampling["rounds"] = sorted([*rounds, entry], key=lambda r: r["round"])
