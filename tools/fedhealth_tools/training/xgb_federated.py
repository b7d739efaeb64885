"""Histogram-based federated XGBoost without FLARE: one process per site around the loopback tracker.

What FLARE's ``XGBFedController`` + ``FedXGBHistogramExecutor`` run, minus the messaging: every site
trains with XGBoost's federated communicator, and the collectives meet in
:class:`fedhealth.workflows.xgb_tracker.LoopbackTracker`. For tests and benchmarks: the model every site
ends with, and what each site sent and received per boosting round.

The site processes are started once per number of sites and reused by later calls (a new process
imports the caller's main module, seconds a process; a training on a few hundred rows takes
milliseconds); each call gets a tracker of its own.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import xgboost as xgb

_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(n: int) -> ProcessPoolExecutor:
    """``n`` site processes: each call gives every one of them one site, as each blocks until all joined."""
    if n not in _POOLS:
        _POOLS[n] = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"))
    return _POOLS[n]


class _Clock(xgb.callback.TrainingCallback):
    """``time.monotonic()`` before the first boosting round and after every round."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[float] = []

    def before_training(self, model: xgb.Booster) -> xgb.Booster:
        self.marks.append(time.monotonic())
        return model

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        self.marks.append(time.monotonic())
        return False


def _train_rank(
    address: str,
    world_size: int,
    rank: int,
    part: tuple[np.ndarray, np.ndarray],
    params: dict,
    num_rounds: int,
) -> tuple[bytes, list[float]]:
    """One site: its rows as a ``DMatrix`` (NaN is missing), trained in the federation; model JSON, marks."""
    features, labels = part
    clock = _Clock()
    with xgb.collective.CommunicatorContext(
        dmlc_communicator="federated",
        federated_server_address=address,
        federated_world_size=world_size,
        federated_rank=rank,
    ):
        booster = xgb.train(params, xgb.DMatrix(features, label=labels), num_rounds, callbacks=[clock])
    return bytes(booster.save_raw("json")), clock.marks


def _traffic(records: list, start: float, end: float, world_size: int, seconds: float) -> dict:
    """Collectives completed in ``[start, end)``: count, and payload bytes from and to each site."""
    inside = [r for r in records if start <= r.completed_at < end]
    return {
        "seconds": seconds,
        "ops": len(inside),
        "bytes_from_sites": [sum(r.received[k] for r in inside) for k in range(world_size)],
        "bytes_to_sites": [sum(r.sent for r in inside)] * world_size,
    }


def run_federated_histogram(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], params: dict, num_rounds: int, *, timeout: float = 300.0
) -> tuple[bytes, dict]:
    """Train horizontally federated XGBoost over ``parts`` (one ``(features, labels)`` per site).

    Args:
        parts: each site's rows; rank ``k`` is ``parts[k]``.
        params: XGBoost parameters (``tree_method`` must be ``hist`` or ``approx``).
        num_rounds: boosting rounds.
        timeout: seconds the tracker waits for a missing site at one collective.

    Returns:
        The model JSON that every site holds, and the run's figures: ``address`` (where the tracker
        listened), ``tracker`` (its :meth:`stats`),
        ``setup`` (from the start to the first round: DMatrix, quantile sketch), ``rounds`` (per boosting
        round: wall seconds, collectives, bytes from and to each site), ``seconds`` and ``round_seconds``
        (wall clock of the call and of each round), ``sites``, ``rows_per_site``,
        ``bytes_per_site_per_round`` (mean payload bytes from and to a site in a round after the first)
        and ``model_sha256`` per site.

    Raises:
        ValueError: fewer than two parts or fewer than one round.
        RuntimeError: a site's process failed, or the sites ended with different models.
    """
    from fedhealth.workflows.xgb_tracker import LoopbackTracker  # not in the spawned sites' imports

    world_size = len(parts)
    if world_size < 2 or num_rounds < 1:
        raise ValueError(
            f"federated histogram training needs >= 2 sites and >= 1 round, not {world_size}, {num_rounds}."
        )
    tracker = LoopbackTracker(world_size, timeout=timeout)
    tracker.start()
    start = time.monotonic()
    pool = _pool(world_size)
    try:
        jobs = [
            pool.submit(_train_rank, tracker.address, world_size, k, part, dict(params), num_rounds)
            for k, part in enumerate(parts)
        ]
        try:
            results = [job.result(timeout=timeout + 60) for job in jobs]
        except Exception as exc:
            raise RuntimeError(f"federated histogram training failed: {exc!r}") from exc
    finally:
        tracker.stop()
    wall = time.monotonic() - start
    models = [model for model, _ in results]
    digests = [hashlib.sha256(m).hexdigest() for m in models]
    if len(set(digests)) != 1:
        raise RuntimeError(f"The sites ended with different models (sha256 per rank: {digests}).")
    marks = results[0][1]  # rank 0's clock: every collective of a round completes before its mark
    records = tracker.records()
    rounds = [
        _traffic(records, marks[i], marks[i + 1], world_size, marks[i + 1] - marks[i])
        for i in range(len(marks) - 1)
    ]
    later = rounds[1:] or rounds  # round 0 also carries the one-off exchange of the split candidates
    stats = {
        "address": tracker.address,
        "tracker": tracker.stats(),
        "setup": _traffic(records, start, marks[0], world_size, marks[0] - start),
        "rounds": rounds,
        "seconds": wall,
        "wall_seconds": wall,
        "round_seconds": [r["seconds"] for r in rounds],
        "sites": world_size,
        "rows_per_site": [len(y) for _, y in parts],
        "bytes_per_site_per_round": {
            "from_site": float(np.mean([b for r in later for b in r["bytes_from_sites"]])),
            "to_site": float(np.mean([b for r in later for b in r["bytes_to_sites"]])),
            "first_round_from_site": float(np.mean(rounds[0]["bytes_from_sites"])),
        },
        "model_sha256": digests,
    }
    return models[0], stats
