"""Error feedback: sent plus residual equals the sum of the raw updates, across a restart too."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.compression.codec import decode_update
from fedhealth.compression.config import CompressionConfig
from fedhealth.compression.feedback import ErrorFeedback

# Dyadic values (multiples of 2**-8 below 2**4) keep every float64 sum exact, so the identity can be
# asserted with ==; fp16 values hold them exactly too when they have few significant bits.
MODES = [
    CompressionConfig(mode="topk", k_fraction=0.05, value_dtype="float32"),
    CompressionConfig(mode="topk", k_fraction=0.01, value_dtype="float16"),
    CompressionConfig(mode="int4", block_size=64),
]


def _updates(rounds: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    return [
        {
            "a": (rng.integers(-2048, 2048, (30, 40)) / 256).astype(np.float32),
            "b": (rng.integers(-2048, 2048, 50) / 256).astype(np.float32),
        }
        for _ in range(rounds)
    ]


@pytest.mark.parametrize("config", MODES, ids=lambda c: c.describe())
def test_sent_plus_residual_equals_sum_of_raw_updates(config, tmp_path):
    updates = _updates(6, np.random.default_rng(1))
    ef = ErrorFeedback(config, tmp_path / "r.npz")
    total_sent = {k: np.zeros(v.size) for k, v in updates[0].items()}
    for update in updates:
        payload, sent = ef.step(update)
        decoded = decode_update(payload)
        for k in update:
            np.testing.assert_array_equal(decoded[k].ravel().astype(np.float64), sent[k])
            total_sent[k] += sent[k]
    for k in updates[0]:
        raw_sum = np.sum([u[k].astype(np.float64).ravel() for u in updates], axis=0)
        if config.value_dtype == "float32" or config.mode != "topk":
            np.testing.assert_array_equal(total_sent[k] + ef.residual[k], raw_sum)
        else:
            np.testing.assert_allclose(total_sent[k] + ef.residual[k], raw_sum, rtol=0, atol=1e-12)
    assert ef.residual_norm() > 0


def test_residual_survives_a_restart(tmp_path):
    config = CompressionConfig(mode="topk", k_fraction=0.02, value_dtype="float32")
    updates = _updates(4, np.random.default_rng(2))
    path = tmp_path / "site" / "residual.npz"
    straight = ErrorFeedback(config)
    first = ErrorFeedback(config, path)
    for u in updates[:2]:
        straight.step(u)
        first.step(u)
    restarted = ErrorFeedback(config, path)  # a new process reading the same run folder
    assert restarted.rounds == 2
    for u in updates[2:]:
        expected, _ = straight.step(u)
        got, _ = restarted.step(u)
        assert got["blob"] == expected["blob"]
    for k in straight.residual:
        np.testing.assert_array_equal(restarted.residual[k], straight.residual[k])


def test_unreadable_residual_is_a_clear_error(tmp_path):
    path = tmp_path / "residual.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="error-feedback residual in .* is unreadable"):
        ErrorFeedback(CompressionConfig(mode="topk"), path)


def test_residual_of_another_shape_is_refused(tmp_path):
    ef = ErrorFeedback(CompressionConfig(mode="topk"))
    ef.step({"w": np.ones(10, np.float32)})
    with pytest.raises(ValueError, match="the model changed within the job"):
        ef.step({"w": np.ones(12, np.float32)})
