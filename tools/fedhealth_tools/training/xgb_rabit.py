"""XGBoost's histogram training across sites on one machine: XGBoost's own tracker and one process a site.

A stand-in for ``fedhealth_tools.training.xgb_federated.run_federated_histogram`` (the loopback
tracker, issue 18) with the same signature, so a benchmark swaps one import. Each part is one
site's rows (row split, XGBoost's ``data_split_mode`` 0): every site's process builds its own
``DMatrix``, joins :class:`xgboost.tracker.RabitTracker` on 127.0.0.1 through
:class:`xgboost.collective.CommunicatorContext`, and calls ``xgb.train`` with the same parameters; the
quantile sketches and the gradient histograms are all-reduced each round, so every site ends with
the same model. The site processes are started once per number of sites and reused by later calls
(a new process imports the caller's main module, seconds a process; a training takes milliseconds).

The collective does not count its bytes here: ``stats["bytes_per_site_per_round"]`` is ``None``.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import xgboost as xgb
from xgboost.tracker import RabitTracker

Part = tuple[np.ndarray, np.ndarray]  # one site's (features with NaN for missing, 0/1 labels)
BYTES_NOTE = (
    "not measured: XGBoost's collective (RabitTracker) does not count the bytes it sends; the "
    "loopback tracker of fedhealth_tools.training.xgb_federated reports them"
)
_POOLS: dict[int, ProcessPoolExecutor] = {}


class _Clock(xgb.callback.TrainingCallback):
    """Wall-clock seconds of every boosting round (from the end of the previous one)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._last = time.perf_counter()

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self._last = now
        return False


def _site(rank: int, args: dict, part: Part, params: dict, num_rounds: int) -> tuple[int, bytes, list[float]]:
    x, y = part
    with xgb.collective.CommunicatorContext(**args, dmlc_task_id=f"{rank:06d}"):
        clock = _Clock()
        train = xgb.DMatrix(x, label=y, missing=np.nan, nthread=1)
        booster = xgb.train(params, train, num_boost_round=num_rounds, callbacks=[clock])
        return rank, bytes(booster.save_raw("json")), clock.seconds


def _pool(n: int) -> ProcessPoolExecutor:
    """``n`` site processes: each call gives every one of them one site, as each blocks until all joined."""
    if n not in _POOLS:
        _POOLS[n] = ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("spawn"))
    return _POOLS[n]


def run_federated_histogram(
    parts: Sequence[Part], params: Mapping[str, Any], num_rounds: int, *, timeout_s: float = 600.0
) -> tuple[bytes, dict]:
    """Histogram-based XGBoost over ``parts`` (one per site); returns ``(model JSON, stats)``.

    ``stats``: ``seconds`` (the whole call), ``round_seconds`` (per boosting round, site 0's clock),
    ``sites``, ``rows_per_site``, ``bytes_per_site_per_round`` (``None``) and ``bytes_note``.

    Raises:
        ValueError: fewer than two parts or fewer than one round.
        RuntimeError: a site's process failed, or the sites ended with different models.
    """
    if len(parts) < 2 or num_rounds < 1:
        raise ValueError(
            f"federated histogram training needs >= 2 sites and >= 1 round, not {len(parts)}, {num_rounds}."
        )
    started = time.perf_counter()
    tracker = RabitTracker(n_workers=len(parts), host_ip="127.0.0.1", sortby="task")
    tracker.start()
    pool = _pool(len(parts))
    futures = [
        pool.submit(_site, rank, tracker.worker_args(), part, dict(params), num_rounds)
        for rank, part in enumerate(parts)
    ]
    try:
        results = sorted(f.result(timeout=timeout_s) for f in futures)
    except Exception as exc:
        raise RuntimeError(f"federated histogram training failed: {exc!r}") from exc
    tracker.wait_for(timeout=int(timeout_s))
    models = {model for _, model, _ in results}
    if len(models) != 1:
        raise RuntimeError(f"the {len(parts)} sites ended with {len(models)} different models")
    stats = {
        "seconds": time.perf_counter() - started,
        "round_seconds": results[0][2],
        "sites": len(parts),
        "rows_per_site": [len(y) for _, y in parts],
        "bytes_per_site_per_round": None,
        "bytes_note": BYTES_NOTE,
    }
    return models.pop(), stats
