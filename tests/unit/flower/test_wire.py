"""Payloads of the Flower apps' messages: JSON in one string, numpy made plain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedhealth.flower.wire import PAYLOAD, metric_record, pack, plain, unpack

# (value, as it travels)
PLAIN_CASES = [
    (np.float32(0.5), 0.5),
    (np.int64(7), 7),
    (float("nan"), None),
    (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
    ({"a": (np.float64(1.5), None)}, {"a": [1.5, None]}),
]


@pytest.mark.parametrize(("value", "expected"), PLAIN_CASES, ids=[str(i) for i in range(len(PLAIN_CASES))])
def test_plain(value: object, expected: object) -> None:
    assert plain(value) == expected


def test_a_profile_with_suppressed_counts_round_trips() -> None:
    profile = {"n": np.int64(120), "features": {"chol": {"count": None, "sum": np.float64(2.5e4)}}}
    record = pack(profile)
    assert list(record) == [PAYLOAD] and isinstance(record[PAYLOAD], str)
    assert unpack(record) == {"n": 120, "features": {"chol": {"count": None, "sum": 25000.0}}}


def test_an_empty_record_is_empty_and_a_list_is_refused() -> None:
    assert unpack({}) == {}
    with pytest.raises(ValueError, match="JSON list, not an object"):
        unpack({PAYLOAD: json.dumps([1, 2])})


def test_pack_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError, match="must be JSON data"):
        pack({"model": object()})


def test_metric_record_keeps_finite_numbers_only() -> None:
    metrics = {"auc": np.float64(0.8), "n_test": 40, "ok": True, "split": "test", "ci": [0.7, 0.9], "x": None}
    assert metric_record(metrics) == {"auc": 0.8, "n_test": 40, "ok": 1}
