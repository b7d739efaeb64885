"""Top-k sparsification with a compact index code, and the error-feedback residual.

Top-k keeps the ``ceil(k * n)`` entries of largest magnitude of each tensor (layer-wise, as in Deep
Gradient Compression, Lin et al. 2018). Sorted indices travel as uint16 gaps; a gap wider than
65535 is bridged by filler entries of value 0, which decode to nothing. Error feedback (Stich et
al. 2018, "Sparsified SGD with Memory") adds what a site did not send to its next update, so every
coordinate of the raw updates is eventually sent: over rounds, what was sent plus the residual
equals the sum of the raw updates.
"""

from __future__ import annotations

import math

import numpy as np

MAX_GAP = np.iinfo(np.uint16).max


def topk_count(size: int, fraction: float) -> int:
    """Entries kept for a tensor of ``size`` values: ``ceil(fraction * size)``, at least 1."""
    return min(size, max(1, math.ceil(fraction * size))) if size else 0


def topk_indices(flat: np.ndarray, count: int) -> np.ndarray:
    """Sorted indices of the ``count`` entries of largest magnitude."""
    if count >= flat.size:
        return np.arange(flat.size)
    part = np.argpartition(-np.abs(flat), count - 1)[:count]
    return np.sort(part)


def encode_indices(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices as uint16 gaps (first gap from 0), with zero-valued fillers for wide gaps."""
    indices = np.asarray(indices, dtype=np.int64)
    values = np.asarray(values)
    gaps = np.diff(indices, prepend=0)
    wide = np.nonzero(gaps > MAX_GAP)[0]
    if wide.size:
        idx_parts, val_parts, start = [], [], 0
        for i in wide:
            prev = indices[i - 1] if i > 0 else 0
            fillers = np.arange(prev + MAX_GAP, indices[i], MAX_GAP)
            idx_parts += [indices[start:i], fillers]
            val_parts += [values[start:i], np.zeros(fillers.size, dtype=values.dtype)]
            start = i
        idx_parts.append(indices[start:])
        val_parts.append(values[start:])
        indices, values = np.concatenate(idx_parts), np.concatenate(val_parts)
        gaps = np.diff(indices, prepend=0)
    return gaps.astype(np.uint16), values


def decode_indices(gaps: np.ndarray) -> np.ndarray:
    """Inverse of the gap code: absolute indices."""
    return np.cumsum(np.asarray(gaps, dtype=np.int64))


def densify(gaps: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """The dense float64 tensor (flat) that a sparse message stands for."""
    out = np.zeros(size, dtype=np.float64)
    out[decode_indices(gaps)] = np.asarray(values, dtype=np.float64)
    return out
