"""Top-k schedules: which rounds are dense, the share each round sends, bad settings, and the
error-feedback residual across the dense -> sparse switch and a decaying k."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedhealth.compression.codec import decode_update, encode_update
from fedhealth.compression.config import CompressionConfig, largest_topk_share
from fedhealth.compression.feedback import ErrorFeedback
from fedhealth.compression.topk import topk_count

WARM2 = {"mode": "topk", "k_fraction": 0.01, "warmup_rounds": 2}
DECAY = {"mode": "topk", "k_fraction": 0.01, "k_start": 0.1, "decay_rounds": 4}
BOTH = {**WARM2, "k_start": 0.1, "decay_rounds": 4}
R = 10 ** (-1 / 4)  # 0.1 -> 0.01 in 4 geometric steps: each round sends R times the one before

# settings -> the share each of the rounds 0..7 sends (1.0: a dense round, mode "none")
SCHEDULES = [
    ("plain", {"mode": "topk", "k_fraction": 0.01}, [0.01] * 8),
    ("warm2", WARM2, [1.0, 1.0] + [0.01] * 6),
    ("decay", DECAY, [0.1, 0.1 * R, 0.1 * R**2, 0.1 * R**3, 0.01, 0.01, 0.01, 0.01]),
    ("warm2+decay", BOTH, [1.0, 1.0, 0.1, 0.1 * R, 0.1 * R**2, 0.1 * R**3, 0.01, 0.01]),
]

# settings -> a fragment of the refusal
BAD = [
    ({**WARM2, "warmup_rounds": -1}, "warmup_rounds must be a whole number of rounds, 0 or more, not -1"),
    ({**WARM2, "warmup_rounds": 1.5}, "warmup_rounds must be a whole number of rounds, 0 or more, not 1.5"),
    ({**WARM2, "warmup_rounds": True}, "warmup_rounds must be a whole number of rounds, 0 or more, not True"),
    ({**DECAY, "decay_rounds": -2}, "decay_rounds must be a whole number of rounds, 0 or more, not -2"),
    ({**DECAY, "k_start": 0.005}, r"k_start \(0.005\) must be above k_fraction \(0.01\) and at most 1"),
    ({**DECAY, "k_start": 0.01}, r"k_start \(0.01\) must be above k_fraction \(0.01\)"),
    ({**DECAY, "k_start": 1.5}, r"k_start \(1.5\) must be above k_fraction \(0.01\) and at most 1"),
    ({**DECAY, "k_start": "0.1"}, "k_start must be a number in"),
    ({**DECAY, "decay_rounds": 0}, r"k_start \(0.1\) and decay_rounds \(0\) go together"),
    ({"mode": "topk", "decay_rounds": 5}, r"k_start \(None\) and decay_rounds \(5\) go together"),
    ({"mode": "int8", "warmup_rounds": 2}, "schedule top-k only, but the mode is 'int8'"),
    ({"mode": "none", "k_start": 0.1, "decay_rounds": 3}, "schedule top-k only, but the mode is 'none'"),
]


@pytest.mark.parametrize(("settings", "shares"), [c[1:] for c in SCHEDULES], ids=[c[0] for c in SCHEDULES])
def test_each_round_sends_its_share(settings, shares):
    config = CompressionConfig(**settings)
    for r, share in enumerate(shares):
        plain = config.at_round(r)
        assert not plain.scheduled
        assert plain.mode == ("none" if share == 1.0 else "topk"), r
        assert math.isclose(config.round_k_fraction(r), share, rel_tol=1e-12), r
        assert (plain.error_feedback, plain.value_dtype) == (config.error_feedback, config.value_dtype)
    assert config.at_round(1000).k_fraction == 0.01 and config.at_round(1000).mode == "topk"


def test_unscheduled_setting_is_its_own_round_setting():
    config = CompressionConfig(mode="int8", error_feedback=False)
    assert config.at_round(7) is config and config.round_k_fraction(7) == 1.0


@pytest.mark.parametrize(("settings", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_schedule_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        CompressionConfig(**settings)


@pytest.mark.parametrize("bad", [-1, 1.0, True, None])
def test_bad_round_index_is_refused(bad):
    with pytest.raises(ValueError, match=f"a round index is a whole number, 0 or more, not {bad}"):
        CompressionConfig(**WARM2).at_round(bad)


@pytest.mark.parametrize(
    ("settings", "label"),
    [
        (WARM2, "topk 1 to 0.01 +EF (2 dense rounds)"),
        ({**WARM2, "warmup_rounds": 1, "error_feedback": False}, "topk 1 to 0.01 (1 dense round)"),
        (DECAY, "topk 0.1 to 0.01 +EF (0.1 decaying over 4 rounds)"),
        (BOTH, "topk 1 to 0.01 +EF (2 dense rounds, then 0.1 decaying over 4 rounds)"),
    ],
)
def test_label_starts_with_the_largest_share(settings, label):
    # Readers of "topk <k>" (the attack audit's settings) see the most any round sent.
    assert CompressionConfig(**settings).describe() == label


@pytest.mark.parametrize(
    ("args", "share"),
    [
        ({}, 0.01),
        ({"k_fraction": 0.1, "error_feedback": True, "value_dtype": "float16"}, 0.1),
        ({"k_fraction": 0.01, "k_start": 0.1, "decay_rounds": 20}, 0.1),
        ({"k_fraction": 0.01, "warmup_rounds": 1, "k_start": 0.1, "decay_rounds": 5}, 1.0),
        ({"k_fraction": 0.01, "k_start": None, "warmup_rounds": 0}, 0.01),
    ],
)
def test_largest_share_any_round_sends(args, share):
    # What a privacy reading of a job must use: not k_fraction when early rounds send more.
    assert largest_topk_share(args) == share


def test_scheduled_setting_is_encoded_one_round_at_a_time():
    with pytest.raises(ValueError, match=r"changes with the round; encode one round's setting"):
        encode_update({"w": np.ones(4, np.float32)}, CompressionConfig(**WARM2))
    with pytest.raises(ValueError, match="ErrorFeedback.step needs the round_index"):
        ErrorFeedback(CompressionConfig(**WARM2)).step({"w": np.ones(4, np.float32)})


def _update(rng: np.random.Generator) -> dict[str, np.ndarray]:
    # Dyadic values: float64 sums are exact, float32 and float16 hold each value exactly.
    return {"a": (rng.integers(-2048, 2048, (20, 30)) / 256).astype(np.float32)}


def test_residual_across_the_dense_to_sparse_switch():
    config = CompressionConfig(mode="topk", k_fraction=0.02, value_dtype="float32", warmup_rounds=2)
    ef = ErrorFeedback(config)
    rng = np.random.default_rng(4)
    updates = [_update(rng) for _ in range(5)]
    total = np.zeros(600)
    for r, update in enumerate(updates):
        payload, sent = ef.step(update, round_index=r)
        flat = update["a"].astype(np.float64).ravel()
        (entry,) = payload["index"]
        if r < 2:  # dense: everything goes, in float32, and nothing is held back
            assert entry["kind"] == "raw" and payload["mode"] == "none"
            np.testing.assert_array_equal(sent["a"], flat)
            assert ef.residual_norm() == 0.0
        else:  # sparse: 12 of 600 entries go; the rest waits in the residual
            assert entry["kind"] == "topk"
            assert np.count_nonzero(sent["a"]) == topk_count(600, 0.02) == 12
            assert ef.residual_norm() > 0
        np.testing.assert_array_equal(decode_update(payload)["a"].ravel(), sent["a"])
        total += sent["a"]
        raw_sum = np.sum([u["a"].astype(np.float64).ravel() for u in updates[: r + 1]], axis=0)
        np.testing.assert_array_equal(total + ef.residual["a"], raw_sum)  # nothing lost at the switch
    # The first sparse round sent the largest entries of its update alone (the residual was empty).
    first_sparse = ErrorFeedback(CompressionConfig(mode="topk", k_fraction=0.02, value_dtype="float32"))
    _, expected = first_sparse.step(updates[2])
    replay = ErrorFeedback(config)
    for r in range(3):
        _, sent = replay.step(updates[r], round_index=r)
    np.testing.assert_array_equal(sent["a"], expected["a"])


def test_residual_of_a_float32_dense_round_keeps_only_the_rounding():
    config = CompressionConfig(mode="topk", k_fraction=0.01, warmup_rounds=1)
    ef = ErrorFeedback(config)
    update = {"a": np.random.default_rng(5).normal(0, 1e-3, 1000).astype(np.float32)}
    ef.residual = {"a": np.full(1000, 1e-12)}  # below float32's resolution at these values
    _, sent = ef.step(update, round_index=0)
    total = update["a"].astype(np.float64) + 1e-12
    np.testing.assert_array_equal(sent["a"], total.astype(np.float32))  # the dense round sends float32
    assert 0 < ef.residual_norm() < 1e-9  # only its rounding waits for the next round
    np.testing.assert_allclose(sent["a"] + ef.residual["a"], total, rtol=0, atol=1e-19)


def test_decaying_k_sends_the_scheduled_count_and_keeps_the_identity():
    config = CompressionConfig(
        mode="topk", k_fraction=0.01, value_dtype="float32", k_start=0.1, decay_rounds=4
    )
    ef = ErrorFeedback(config)
    rng = np.random.default_rng(6)
    updates = [_update(rng) for _ in range(6)]
    total = np.zeros(600)
    counts = []
    for r, update in enumerate(updates):
        _, sent = ef.step(update, round_index=r)
        counts.append(int(np.count_nonzero(sent["a"])))
        total += sent["a"]
    assert counts == [topk_count(600, config.round_k_fraction(r)) for r in range(6)] == [60, 34, 19, 11, 6, 6]
    raw_sum = np.sum([u["a"].astype(np.float64).ravel() for u in updates], axis=0)
    np.testing.assert_array_equal(total + ef.residual["a"], raw_sum)
