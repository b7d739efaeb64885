"""Blockwise affine quantization to 8 or 4 bits, and fp16, of flat float arrays.

Each block of ``block_size`` consecutive values keeps its own offset (the block minimum) and scale
(``(max - min) / (2**bits - 1)``), both as float32, so one outlier only coarsens its own block
(the blockwise idea of Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization", with an
affine instead of a dynamic code so that it runs on any CPU without bitsandbytes). A value's
reconstruction error is at most half its block's scale.
"""

from __future__ import annotations

import numpy as np

QUANT_BITS = (4, 8)
FP16_MAX = float(np.finfo(np.float16).max)


def quantize_blockwise(
    flat: np.ndarray, *, bits: int, block_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize a 1-D array blockwise.

    Args:
        flat: finite values, any float dtype.
        bits: 8 or 4; 4-bit codes are packed two to a byte.
        block_size: values per block.

    Returns:
        ``(codes, offsets, scales)``: packed uint8 codes, and float32 offset and scale per block.
    """
    if bits not in QUANT_BITS:
        raise ValueError(f"bits must be one of {QUANT_BITS}, got {bits}.")
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}.")
    values = np.asarray(flat, dtype=np.float64).ravel()
    n = values.size
    n_blocks = max(1, -(-n // block_size))
    padded = np.full(n_blocks * block_size, np.nan)
    padded[:n] = values
    blocks = padded.reshape(n_blocks, block_size)
    if n == 0:
        lo = hi = np.zeros(n_blocks)
    else:
        lo = np.nanmin(blocks, axis=1)
        hi = np.nanmax(blocks, axis=1)
    levels = 2**bits - 1
    offsets = lo.astype(np.float32)
    scales = ((hi - lo) / levels).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float64)[:, None]
    codes = np.rint((blocks - offsets.astype(np.float64)[:, None]) / safe)
    codes = np.clip(np.nan_to_num(codes, nan=0.0), 0, levels).astype(np.uint8).ravel()[:n]
    if bits == 4:
        codes = _pack4(codes)
    return codes, offsets, scales


def dequantize_blockwise(
    codes: np.ndarray, offsets: np.ndarray, scales: np.ndarray, *, bits: int, block_size: int, size: int
) -> np.ndarray:
    """Inverse of :func:`quantize_blockwise`: float64 values of length ``size``."""
    q = _unpack4(codes, size) if bits == 4 else np.asarray(codes, dtype=np.uint8)[:size]
    block = np.arange(size) // block_size
    return offsets.astype(np.float64)[block] + q.astype(np.float64) * scales.astype(np.float64)[block]


def to_fp16(flat: np.ndarray) -> np.ndarray:
    """Round to float16, clipping to its finite range (65504)."""
    return np.clip(np.asarray(flat, dtype=np.float64), -FP16_MAX, FP16_MAX).astype(np.float16)


def _pack4(codes: np.ndarray) -> np.ndarray:
    if codes.size % 2:
        codes = np.append(codes, np.uint8(0))
    return (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)


def _unpack4(packed: np.ndarray, size: int) -> np.ndarray:
    packed = np.asarray(packed, dtype=np.uint8)
    out = np.empty(packed.size * 2, dtype=np.uint8)
    out[0::2] = packed & 0x0F
    out[1::2] = packed >> 4
    return out[:size]
