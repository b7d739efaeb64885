"""Fixed-point encoding of model updates into the ring Z_{2^bits} that SecAgg+ masks live in.

Masks cancel only in exact arithmetic, so each site turns its float update into integers modulo
``2^bits`` (Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning",
CCS 2017, §3; Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS
2020). The encoding is a quantizer: ``round(x × scale)``.

No overflow, by construction: every site clips its update to L2 norm ``max_norm``
(:func:`fedhealth.privacy.update_guard.guard_update`), so every coordinate is in
``[-max_norm, max_norm]``; it multiplies the update by its weight ratio ``w / max_weight`` (at most
1). A sum of at most ``max_sites`` such values times ``scale`` stays below ``2^(bits-2)`` in
magnitude, a quarter of the ring, which leaves room for the rounding of every term. The weight
ratio travels as one more coordinate with its own scale, so the server divides the masked sum by the
summed weights without learning any single one.

Rounding error: at most ``0.5 / scale`` per site and coordinate, so ``max_sites × 0.5 / scale`` on a
coordinate of the weighted sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BITS = (32, 40, 48, 56, 64)  # whole bytes on the wire; 32 computes in uint32, the others in uint64


def _words(bits: int) -> tuple[type, type]:
    return (np.uint32, np.int32) if bits == 32 else (np.uint64, np.int64)


@dataclass(frozen=True)
class FixedPoint:
    """The encoding every site and the server of one job share (from the job's config).

    Attributes:
        bits: the ring's width: 32, 40, 48, 56 or 64 (``bits / 8`` bytes a value on the wire). The
            arithmetic is modulo the machine word (2^32 or 2^64), a multiple of ``2^bits``, and the
            values are reduced modulo ``2^bits`` before they leave: masks cancel all the same.
        max_norm: the L2 bound every site clips its update to.
        max_sites: the most sites a sum may hold.
        max_weight: the largest FedAvg weight (training rows) a site may have; weights are sent as
            ``w / max_weight``.
    """

    bits: int
    max_norm: float
    max_sites: int
    max_weight: float

    def __post_init__(self) -> None:
        if self.bits not in BITS:
            raise ValueError(f"bits must be one of {BITS}, got {self.bits!r}.")
        if not (np.isfinite(self.max_norm) and self.max_norm > 0):
            raise ValueError(f"max_norm must be a positive finite number, got {self.max_norm!r}.")
        if int(self.max_sites) < 1 or not (np.isfinite(self.max_weight) and self.max_weight > 0):
            raise ValueError(
                f"max_sites must be at least 1 and max_weight positive, got {self.max_sites!r} and "
                f"{self.max_weight!r}."
            )

    @property
    def dtype(self) -> type:
        """The unsigned machine word the ring's elements are computed in."""
        return _words(self.bits)[0]

    @property
    def wire_bytes(self) -> int:
        """Bytes a value takes on the wire."""
        return self.bits // 8

    def reduce(self, values: np.ndarray) -> np.ndarray:
        """``values`` modulo ``2^bits`` (in the machine word)."""
        values = np.asarray(values, self.dtype)
        if self.bits in (32, 64):
            return values
        return values & self.dtype((1 << self.bits) - 1)

    def to_wire(self, values: np.ndarray) -> np.ndarray:
        """Ring elements as ``bits / 8`` little-endian bytes each (a uint8 array)."""
        words = np.ascontiguousarray(self.reduce(values).astype(np.dtype(self.dtype).newbyteorder("<")))
        width = np.dtype(self.dtype).itemsize
        return words.view(np.uint8).reshape(-1, width)[:, : self.wire_bytes].ravel()

    def from_wire(self, data: np.ndarray, *, size: int) -> np.ndarray:
        """The ``size`` ring elements of :meth:`to_wire`'s bytes; ``ValueError`` if they are not that."""
        data = np.asarray(data)
        if data.dtype != np.uint8 or data.shape != (size * self.wire_bytes,):
            raise ValueError(
                f"a masked update is {data.dtype} {data.shape}, expected uint8 ({size * self.wire_bytes},): "
                f"{size} values of {self.bits} bits"
            )
        width = np.dtype(self.dtype).itemsize
        words = np.zeros((size, width), np.uint8)
        words[:, : self.wire_bytes] = data.reshape(size, self.wire_bytes)
        return words.view(np.dtype(self.dtype).newbyteorder("<")).ravel().astype(self.dtype)

    @property
    def scale(self) -> float:
        """Integers per unit of an update's coordinate."""
        return 2.0 ** (self.bits - 2) / (self.max_sites * self.max_norm)

    @property
    def weight_scale(self) -> float:
        """Integers per unit of a weight ratio (the last coordinate)."""
        return 2.0 ** (self.bits - 2) / self.max_sites

    def ratio(self, weight: float) -> float:
        """``weight / max_weight``; a weight above ``max_weight`` or not positive is refused."""
        if not (np.isfinite(weight) and 0 < weight <= self.max_weight):
            raise ValueError(
                f"a site's FedAvg weight {weight!r} is outside (0, max_weight={self.max_weight:g}]; "
                "raise max_weight in the job's SecAgg settings."
            )
        return float(weight) / self.max_weight

    def _to_ring(self, values: np.ndarray, scale: float) -> np.ndarray:
        signed = np.rint(np.asarray(values, np.float64) * scale).astype(np.int64)
        return signed.astype(self.dtype)  # two's complement: the residue modulo 2^bits

    def encode(self, flat: np.ndarray, *, weight: float) -> np.ndarray:
        """A clipped update (1-D) and its FedAvg weight as ring elements: ``[r·x × scale, r × wscale]``."""
        flat = np.asarray(flat, np.float64).ravel()
        if flat.size and float(np.max(np.abs(flat))) > self.max_norm * (1 + 1e-9):
            raise ValueError(
                "a coordinate of the update is above max_norm: clip the update (guard_update) first."
            )
        r = self.ratio(weight)
        return self.reduce(
            np.concatenate(
                [self._to_ring(flat * r, self.scale), self._to_ring(np.array([r]), self.weight_scale)]
            )
        )

    def decode(self, total: np.ndarray) -> tuple[np.ndarray, float]:
        """The unmasked sum as ``(Σ r_i x_i, Σ r_i)`` in floats (the ring read as signed integers)."""
        reduced = self.reduce(total)
        if self.bits in (32, 64):
            signed = reduced.view(_words(self.bits)[1]).astype(np.float64)
        else:
            signed = reduced.astype(np.int64)
            signed = np.where(signed >= 1 << (self.bits - 1), signed - (1 << self.bits), signed).astype(
                np.float64
            )
        return signed[:-1] / self.scale, float(signed[-1] / self.weight_scale)

    def max_error(self, sites: int) -> float:
        """The largest rounding error on a coordinate of a sum of ``sites`` encoded updates."""
        return sites * 0.5 / self.scale


def flatten(update: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """The update's layers in ``names`` order as one float64 vector."""
    missing = [n for n in names if n not in update]
    if missing or len(update) != len(names):
        raise ValueError(
            f"the update's layers {sorted(update)} differ from the global model's {sorted(names)}."
        )
    return (
        np.concatenate([np.asarray(update[n], np.float64).ravel() for n in names]) if names else np.zeros(0)
    )


def unflatten(flat: np.ndarray, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """``flat`` cut back into layers of ``shapes`` (in its key order)."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape)) if shape else 1
        out[name] = flat[start : start + size].reshape(shape)
        start += size
    if start != flat.size:
        raise ValueError(f"the vector has {flat.size} values, the layers {start}.")
    return out
