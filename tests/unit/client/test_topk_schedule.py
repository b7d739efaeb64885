"""The topk client algorithm's schedule: options from a job, the round's share, and a restart."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth import constants as C
from fedhealth.client.base import AlgorithmContext, RoundInput, RoundState, build_algorithm

SHAPE = (40, 50)
# job args -> the share rounds 0..4 send (1.0: dense)
CASES = [
    ({"k_fraction": 0.01, "warmup_rounds": 3}, [1.0, 1.0, 1.0, 0.01, 0.01]),
    ({"k_fraction": 0.01, "k_start": 0.04, "decay_rounds": 2}, [0.04, 0.02, 0.01, 0.01, 0.01]),
]
BAD = [
    ({"warmup_rounds": -1}, "warmup_rounds must be a whole number of rounds, 0 or more, not -1"),
    ({"k_start": 0.1}, r"k_start \(0.1\) and decay_rounds \(0\) go together"),
    ({"warmup": 2}, "client algorithm 'topk' has no argument 'warmup'; it takes: k_fraction, error_feedback"),
]


def _round(algorithm, r: int, update: np.ndarray) -> RoundState:
    start = {"w": np.zeros(SHAPE)}
    rnd = RoundInput(weights=start, lr=None, round_index=r, num_rounds=5)
    state = RoundState(rnd=rnd, model=None, received=None, start=start, lr=0.001, config=None)  # type: ignore[arg-type]
    state.update = {"w": update}
    algorithm.after_round(state)
    return state


def _started(args: dict, run_dir):
    algorithm = build_algorithm("topk", {"value_dtype": "float32", **args})
    algorithm.start(AlgorithmContext(task=None, site=None, local={}, settings={}, run_dir=run_dir))  # type: ignore[arg-type]
    return algorithm


@pytest.mark.parametrize(("args", "shares"), CASES, ids=["warmup", "decay"])
def test_each_round_sends_the_scheduled_share(tmp_path, args, shares):
    algorithm, rng = _started(args, tmp_path), np.random.default_rng(11)
    for r, share in enumerate(shares):
        state = _round(algorithm, r, rng.normal(0, 1, SHAPE).astype(np.float32))
        assert state.kind == "WEIGHT_DIFF" and state.metrics[C.M_TOPK_K_FRACTION] == pytest.approx(share)
        expected = 2000 if share == 1.0 else int(np.ceil(share * 2000 - 1e-9))
        assert np.count_nonzero(state.update["w"]) == expected, r


def test_restarted_site_follows_the_job_round_not_its_own_count(tmp_path):
    args = {"k_fraction": 0.01, "warmup_rounds": 2}
    rng = np.random.default_rng(12)
    updates = [rng.normal(0, 1, SHAPE).astype(np.float32) for _ in range(4)]
    straight = _started(args, tmp_path / "a")
    first = _started(args, tmp_path / "b")
    for r in range(2):
        _round(straight, r, updates[r])
        _round(first, r, updates[r])
    restarted = _started(args, tmp_path / "b")  # a new process: the residual comes back from disk
    for r in (2, 3):
        expected = _round(straight, r, updates[r]).update["w"]
        np.testing.assert_array_equal(_round(restarted, r, updates[r]).update["w"], expected)
        assert np.count_nonzero(expected) == 20


@pytest.mark.parametrize(("args", "message"), BAD, ids=["negative", "k_start_alone", "typo"])
def test_bad_schedule_in_a_job_is_refused(args, message):
    with pytest.raises(ValueError, match=message):
        build_algorithm("topk", args)
