"""Histogram-based federated XGBoost without FLARE: one process per site around the loopback tracker.

What FLARE's ``XGBFedController`` + ``FedXGBHistogramExecutor`` run, minus the messaging: every site
trains with XGBoost's federated communicator, and the collectives meet in
:class:`fedhealth.workflows.xgb_tracker.LoopbackTracker`. For tests and benchmarks: the model every site
ends with, and what each site sent and received per boosting round.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import xgboost as xgb


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
    parts: list[tuple[np.ndarray, np.ndarray]], params: dict, num_rounds: int, *, timeout: float = 300.0
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
        ``setup`` (from the start to the first round: process start, DMatrix), ``rounds`` (per boosting
        round: wall seconds, collectives, bytes from and to each site; round 0 also carries the quantile
        sketch), ``wall_seconds`` and ``model_sha256`` per site.

    Raises:
        RuntimeError: the sites ended with different models.
    """
    from fedhealth.workflows.xgb_tracker import LoopbackTracker  # not in the spawned sites' imports

    world_size = len(parts)
    tracker = LoopbackTracker(world_size, timeout=timeout)
    tracker.start()
    start = time.monotonic()
    try:
        with ProcessPoolExecutor(world_size, mp_context=mp.get_context("spawn")) as pool:
            jobs = [
                pool.submit(_train_rank, tracker.address, world_size, k, part, params, num_rounds)
                for k, part in enumerate(parts)
            ]
            results = [job.result() for job in jobs]
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
    stats = {
        "address": tracker.address,
        "tracker": tracker.stats(),
        "setup": _traffic(records, start, marks[0], world_size, marks[0] - start),
        "rounds": rounds,
        "wall_seconds": wall,
        "model_sha256": digests,
    }
    return models[0], stats
