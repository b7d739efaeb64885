"""A whole update encodes into one payload, decodes to the right shapes, and is really smaller."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.compression.codec import decode_update, encode_update
from fedhealth.compression.config import CompressionConfig

RNG = np.random.default_rng(0)
UPDATE = {
    "conv.weight": RNG.normal(0, 0.01, (16, 1, 3, 3)).astype(np.float32),
    "fc.weight": RNG.normal(0, 0.01, (64, 1568)).astype(np.float32),
    "fc.bias": RNG.normal(0, 0.01, 64).astype(np.float32),
    "steps": np.array(7, dtype=np.int64),
}
N_FLOAT = sum(v.size for k, v in UPDATE.items() if k != "steps")

# mode, k, blob bytes at most (of 4 * N_FLOAT raw), max abs error
CASES = [
    ("none", 1.0, 4 * N_FLOAT + 8, 0.0),
    ("fp16", 1.0, 2 * N_FLOAT + 8, 3e-5),
    ("int8", 1.0, N_FLOAT * 1.02 + 8, 2e-4),
    ("int4", 1.0, N_FLOAT * 0.52 + 8, 4e-3),
    ("topk", 0.01, N_FLOAT * 0.01 * 4 * 1.05 + 100, None),
]


@pytest.mark.parametrize(("mode", "k", "max_blob", "max_err"), CASES)
def test_round_trip(mode, k, max_blob, max_err):
    config = CompressionConfig(mode=mode, k_fraction=k, error_feedback=False)
    payload, sent = encode_update(UPDATE, config)
    out = decode_update(payload)
    assert len(payload["blob"]) <= max_blob
    assert set(out) == set(UPDATE)
    for name, value in UPDATE.items():
        assert out[name].shape == value.shape and out[name].dtype == value.dtype
        np.testing.assert_array_equal(out[name].ravel(), sent[name].astype(value.dtype))
    assert out["steps"] == 7  # integer buffers travel exactly
    if max_err is not None:
        assert max(np.max(np.abs(out[k] - v)) for k, v in UPDATE.items()) <= max_err
    else:  # top-k: exactly the 1% largest of each tensor, the rest zero
        kept = np.count_nonzero(out["fc.weight"])
        assert kept == int(np.ceil(0.01 * UPDATE["fc.weight"].size))
        threshold = np.sort(np.abs(UPDATE["fc.weight"]).ravel())[-kept]
        assert np.all(np.abs(UPDATE["fc.weight"][out["fc.weight"] != 0]) >= threshold)


def test_non_finite_update_is_refused_with_the_tensor_name():
    bad = {"w": np.array([1.0, np.nan], dtype=np.float32)}
    with pytest.raises(ValueError, match="'w' holds NaN or infinite"):
        encode_update(bad, CompressionConfig(mode="int8"))


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown compressed payload format"):
        decode_update({"format": 99, "index": [], "blob": b""})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "zip"}, "compression mode must be one of"),
        ({"mode": "topk", "k_fraction": 0.0}, "k_fraction must be in"),
        ({"mode": "int8", "block_size": 4}, "block_size must be at least"),
        ({"mode": "topk", "value_dtype": "int8"}, "value_dtype must be one of"),
    ],
)
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CompressionConfig(**kwargs)
