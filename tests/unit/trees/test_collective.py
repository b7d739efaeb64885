"""The collectives' arithmetic: Allreduce per type and operation in rank order, gather, broadcast, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.trees import collective as C

# (dtype code, operation, ranks' arrays, expected)
REDUCES = [
    (1, C.SUM, [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [9.0, 12.0]),
    (2, C.SUM, [[0.1], [0.2], [0.3]], [(0.1 + 0.2) + 0.3]),
    (0, C.SUM, [[1.5], [2.25]], [3.75]),
    (3, C.SUM, [[1.0], [2.0]], [3.0]),
    (6, C.MAX, [[-5, 7], [3, -9], [1, 2]], [3, 7]),
    (7, C.MIN, [[-5, 7], [3, -9], [1, 2]], [-5, -9]),
    (8, C.MIN, [[200, 7], [3, 255]], [3, 7]),
    (11, C.SUM, [[2**63], [2**62]], [2**63 + 2**62]),
    (4, C.SUM, [[127], [1]], [-128]),  # wraps, as the C++ tracker does
    (10, C.BITWISE_AND, [[0b1100], [0b1010]], [0b1000]),
    (9, C.BITWISE_OR, [[0b1100], [0b1010]], [0b1110]),
    (5, C.BITWISE_XOR, [[0b1100], [0b1010], [0b0001]], [0b0111]),
    # rank order, not arrival order: (1e8 + 1) - 1e8 is 0 in float32, (1e8 - 1e8) + 1 is 1
    (1, C.SUM, [[1e8], [1.0], [-1e8]], [0.0]),
    (1, C.SUM, [[1e8], [-1e8], [1.0]], [1.0]),
    # std::max(a, b) is (a < b) ? b : a: a NaN first stays, a NaN second is ignored
    (2, C.MAX, [[np.nan, 1.0], [1.0, np.nan]], [np.nan, 1.0]),
    (2, C.MIN, [[np.nan, 1.0], [1.0, np.nan]], [np.nan, 1.0]),
]
# (dtype code, operation, buffers, message)
BAD = [
    (12, C.SUM, [b"\0" * 4], "not a DataType code"),
    (1, 6, [b"\0" * 4], "not a ReduceOperation code"),
    (1, C.BITWISE_OR, [b"\0" * 4, b"\0" * 4], "not defined on floating-point"),
    (1, C.SUM, [b"\0" * 4, b"\0" * 8], "differ in size"),
    (2, C.SUM, [b"\0" * 12, b"\0" * 12], "whole number of float64"),
]


@pytest.mark.parametrize(("code", "op", "ranks", "expected"), REDUCES)
def test_reduce(code: int, op: int, ranks: list, expected: list) -> None:
    dtype = C.DTYPES[code]
    out = C.reduce([np.array(r, dtype=dtype).tobytes() for r in ranks], code, op)
    got = np.frombuffer(out, dtype=dtype)
    np.testing.assert_array_equal(got, np.array(expected, dtype=dtype))


@pytest.mark.parametrize(("code", "op", "buffers", "message"), BAD)
def test_reduce_refuses(code: int, op: int, buffers: list[bytes], message: str) -> None:
    with pytest.raises(C.CollectiveError, match=message):
        C.reduce(buffers, code, op)


def test_gather_concatenates_in_rank_order_whatever_the_sizes() -> None:
    assert C.gather([b"ab", b"", b"cde"]) == b"abcde"


def test_broadcast_answers_the_root_and_checks_it() -> None:
    assert C.broadcast([b"", b"root", b""], 1) == b"root"
    with pytest.raises(C.CollectiveError, match="root 3 is not a rank of a world of 3"):
        C.broadcast([b"", b"", b""], 3)


def test_dtype_codes_are_the_enum_order() -> None:
    names = [C.DTYPES[k].name for k in range(12)]
    assert names[:3] == ["float16", "float32", "float64"]
    assert names[4:] == ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
    assert C.DTYPES[3] == np.dtype(np.longdouble)
