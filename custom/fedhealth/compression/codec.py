"""Encode a dict of tensors into one compact message payload, and decode it back.

The payload is ``{"format": 1, "mode": ..., "index": [...], "blob": bytes}``: one byte string for all
tensors plus a small index (name, shape, dtype, and the byte ranges of each part), so a message
carries a few hundred bytes of framing instead of one framed array per part. Decoding returns
float32 arrays in the original shapes; ``encode_update`` also returns what the receiver will decode,
which error feedback needs.
"""

from __future__ import annotations

import numpy as np

from fedhealth.compression.config import CompressionConfig
from fedhealth.compression.quantize import dequantize_blockwise, quantize_blockwise, to_fp16
from fedhealth.compression.topk import densify, encode_indices, topk_count, topk_indices

FORMAT = 1
_BITS = {"int8": 8, "int4": 4}


def encode_update(
    update: dict[str, np.ndarray],
    config: CompressionConfig,
    residual: dict[str, np.ndarray] | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Compress ``update`` (plus ``residual``, when given) into a payload.

    Args:
        update: tensors by name (numpy arrays or anything ``np.asarray`` takes).
        config: the compression setting.
        residual: error-feedback memory from the previous round, by name (float64).

    Returns:
        ``(payload, sent)``: the payload, and the float64 tensors the receiver will decode (so the
        new residual is ``update + residual - sent``).

    Raises:
        ValueError: when a tensor holds NaN or infinity (a broken update is never compressed), the
            residual does not match the update, or ``config`` has a schedule (encode one round's
            setting, ``config.at_round(round_index)``).
    """
    if config.scheduled:
        raise ValueError(
            f"the compression setting {config.describe()!r} changes with the round; encode one round's "
            "setting, config.at_round(round_index)."
        )
    parts: list[bytes] = []
    index: list[dict] = []
    sent: dict[str, np.ndarray] = {}
    offset = 0
    for name, value in update.items():
        array = np.asarray(value)
        if array.dtype.kind not in "f":  # counters and integer buffers travel exactly
            exact = np.ascontiguousarray(array.ravel())
            index.append(
                {"kind": "exact", "name": name, "shape": list(array.shape), "dtype": str(array.dtype)}
            )
            index[-1]["parts"] = [[offset, exact.nbytes, str(exact.dtype)]]
            parts.append(exact.tobytes())
            offset += exact.nbytes
            sent[name] = exact.astype(np.float64)
            continue
        if not np.all(np.isfinite(array)):
            raise ValueError(f"update tensor {name!r} holds NaN or infinite values; refusing to compress it.")
        flat = array.astype(np.float64).ravel()
        if residual is not None and name in residual:
            if residual[name].shape != flat.shape:
                raise ValueError(
                    f"the error-feedback residual of {name!r} has {residual[name].size} values but the "
                    f"update has {flat.size}; the model changed within the job."
                )
            flat = flat + residual[name]
        chunks, entry, decoded = _encode_tensor(flat, config)
        entry.update(name=name, shape=list(array.shape), dtype=str(array.dtype))
        entry["parts"] = []
        for chunk in chunks:
            raw = chunk.tobytes()
            entry["parts"].append([offset, len(raw), str(chunk.dtype)])
            parts.append(raw)
            offset += len(raw)
        index.append(entry)
        sent[name] = decoded.astype(array.dtype).astype(np.float64)  # what the receiver's dtype keeps
    payload = {"format": FORMAT, "mode": config.mode, "index": index, "blob": b"".join(parts)}
    return payload, sent


def decode_update(payload: dict) -> dict[str, np.ndarray]:
    """Decode a payload from :func:`encode_update` into float arrays in their original shapes."""
    if payload.get("format") != FORMAT:
        raise ValueError(f"unknown compressed payload format {payload.get('format')!r} (expected {FORMAT}).")
    blob = payload["blob"]
    out = {}
    for entry in payload["index"]:
        chunks = [
            np.frombuffer(blob, dtype=dt, count=n // np.dtype(dt).itemsize, offset=o)
            for o, n, dt in entry["parts"]
        ]
        size = int(np.prod(entry["shape"], dtype=np.int64))
        if entry["kind"] == "exact":
            out[entry["name"]] = chunks[0].copy().reshape(entry["shape"])
            continue
        flat = _decode_tensor(entry, chunks, size)
        out[entry["name"]] = flat.astype(entry["dtype"]).reshape(entry["shape"])
    return out


def _encode_tensor(flat: np.ndarray, config: CompressionConfig) -> tuple[list[np.ndarray], dict, np.ndarray]:
    mode = config.mode
    if mode == "none":
        values = flat.astype(np.float32)
        return [values], {"kind": "raw"}, values.astype(np.float64)
    if mode == "fp16":
        values = to_fp16(flat)
        return [values], {"kind": "fp16"}, values.astype(np.float64)
    if mode in _BITS:
        bits = _BITS[mode]
        codes, offsets, scales = quantize_blockwise(flat, bits=bits, block_size=config.block_size)
        entry = {"kind": mode, "block": config.block_size}
        decoded = dequantize_blockwise(
            codes, offsets, scales, bits=bits, block_size=config.block_size, size=flat.size
        )
        return [codes, offsets, scales], entry, decoded
    indices = topk_indices(flat, topk_count(flat.size, config.k_fraction))
    values = flat[indices].astype(config.value_dtype)
    gaps, values = encode_indices(indices, values)
    return [gaps, values], {"kind": "topk"}, densify(gaps, values, flat.size)


def _decode_tensor(entry: dict, chunks: list[np.ndarray], size: int) -> np.ndarray:
    kind = entry["kind"]
    if kind in ("raw", "fp16"):
        return chunks[0].astype(np.float64)
    if kind in _BITS:
        codes, offsets, scales = chunks
        return dequantize_blockwise(
            codes, offsets, scales, bits=_BITS[kind], block_size=entry["block"], size=size
        )
    if kind == "topk":
        return densify(chunks[0], chunks[1], size)
    raise ValueError(f"unknown tensor encoding {kind!r} in a compressed payload.")
