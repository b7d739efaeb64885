"""The arithmetic of XGBoost's federated collectives, FLARE-free: gather, reduce, broadcast of byte buffers.

XGBoost's federated communicator (``plugin/federated`` in XGBoost) sends every collective operation of a
worker as raw bytes plus, for Allreduce, two enum codes: the element type (XGBoost's
``ArrayInterfaceHandler::Type``, the proto's ``DataType``) and the operation (``collective::Op``, the
proto's ``ReduceOperation``). The codes below are those enums' values; a test checks them against the
proto that FLARE ships. :class:`fedhealth.workflows.xgb_tracker.LoopbackTracker` serves these functions
over gRPC.

Everything here works on the ranks' buffers *in rank order*, so a result does not depend on which rank
arrived first (XGBoost's own tracker accumulates in arrival order, so its float sums can differ in the
last bit from run to run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# DataType: HALF, FLOAT, DOUBLE, LONG_DOUBLE, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64.
# LONG_DOUBLE is the C compiler's ``long double``, which is what numpy's ``longdouble`` is.
DTYPES: dict[int, np.dtype] = {
    code: np.dtype(t)
    for code, t in enumerate(
        [
            np.float16,
            np.float32,
            np.float64,
            np.longdouble,
            np.int8,
            np.int16,
            np.int32,
            np.int64,
            np.uint8,
            np.uint16,
            np.uint32,
            np.uint64,
        ]
    )
}

MAX, MIN, SUM, BITWISE_AND, BITWISE_OR, BITWISE_XOR = range(6)  # ReduceOperation
OP_NAMES = {
    MAX: "MAX",
    MIN: "MIN",
    SUM: "SUM",
    BITWISE_AND: "BITWISE_AND",
    BITWISE_OR: "BITWISE_OR",
    BITWISE_XOR: "BITWISE_XOR",
}


class CollectiveError(ValueError):
    """A request that cannot be served: wrong sizes, an unknown type or operation, a bad root."""


def _max(acc: np.ndarray, x: np.ndarray) -> np.ndarray:
    # std::max(a, b) is (a < b) ? b : a: the same answer as XGBoost's tracker, NaN included.
    return np.where(acc < x, x, acc)


def _min(acc: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where(x < acc, x, acc)  # std::min(a, b) is (b < a) ? b : a


_REDUCERS: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    MAX: _max,
    MIN: _min,
    SUM: np.add,
    BITWISE_AND: np.bitwise_and,
    BITWISE_OR: np.bitwise_or,
    BITWISE_XOR: np.bitwise_xor,
}


def gather(buffers: Sequence[bytes]) -> bytes:
    """Allgather and AllgatherV: the ranks' buffers concatenated in rank order (sizes may differ)."""
    return b"".join(buffers)


def broadcast(buffers: Sequence[bytes], root: int) -> bytes:
    """Broadcast: the root rank's buffer (the other ranks send an empty one)."""
    if not 0 <= root < len(buffers):
        raise CollectiveError(f"Broadcast root {root} is not a rank of a world of {len(buffers)}.")
    return buffers[root]


def reduce(buffers: Sequence[bytes], data_type: int, operation: int) -> bytes:
    """Allreduce: element-wise ``operation`` over the ranks' arrays, folded left to right in rank order.

    Args:
        buffers: one buffer per rank, rank 0 first, all of the same length.
        data_type: the proto's ``DataType`` code (:data:`DTYPES`).
        operation: the proto's ``ReduceOperation`` code (:data:`MAX` ... :data:`BITWISE_XOR`).

    Raises:
        CollectiveError: an unknown code, a bitwise operation on floats, or buffers whose sizes differ
            or are not whole elements.
    """
    if data_type not in DTYPES:
        raise CollectiveError(f"Allreduce data_type {data_type} is not a DataType code (0 to 11).")
    if operation not in _REDUCERS:
        raise CollectiveError(
            f"Allreduce reduce_operation {operation} is not a ReduceOperation code (0 to 5)."
        )
    dtype = DTYPES[data_type]
    if operation >= BITWISE_AND and dtype.kind == "f":
        raise CollectiveError(f"{OP_NAMES[operation]} is not defined on floating-point data ({dtype}).")
    sizes = {len(b) for b in buffers}
    if len(sizes) != 1:
        raise CollectiveError(f"Allreduce buffers differ in size across ranks: {[len(b) for b in buffers]}.")
    size = sizes.pop()
    if size % dtype.itemsize:
        raise CollectiveError(f"Allreduce buffer of {size} bytes is not a whole number of {dtype} elements.")
    reducer = _REDUCERS[operation]
    acc = np.frombuffer(buffers[0], dtype=dtype).copy()
    for buf in buffers[1:]:
        acc = reducer(acc, np.frombuffer(buf, dtype=dtype))
    return acc.astype(dtype, copy=False).tobytes()
