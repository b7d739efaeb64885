"""Shamir secret sharing of 32-byte secrets over the prime field GF(2^521 - 1).

A secret is the constant term of a random polynomial of degree ``t - 1``; share ``x`` is the
polynomial's value at ``x`` (Shamir, "How to share a secret", CACM 1979). Any ``t`` shares give the
secret back by Lagrange interpolation at 0; ``t - 1`` shares are uniformly distributed whatever the
secret, so they reveal nothing about it. The prime is the Mersenne prime ``2^521 - 1``, larger than
any 64-byte secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

PRIME = 2**521 - 1
SHARE_BYTES = 66  # 521 bits
MAX_SECRET_BYTES = 64


def split(secret: bytes, *, threshold: int, xs: Sequence[int]) -> dict[int, bytes]:
    """``secret`` shared so that any ``threshold`` of the shares at ``xs`` (distinct, 1..) recover it.

    Raises:
        ValueError: the secret is too long, ``threshold`` is below 1 or above the number of shares,
            or an ``x`` repeats or is not positive.
    """
    if len(secret) > MAX_SECRET_BYTES:
        raise ValueError(f"a secret has at most {MAX_SECRET_BYTES} bytes, got {len(secret)}.")
    if len(set(xs)) != len(xs) or any(int(x) < 1 for x in xs):
        raise ValueError(f"share points must be distinct positive integers, got {list(xs)}.")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be between 1 and the {len(xs)} shares, got {threshold}.")
    coeffs = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    out = {}
    for x in xs:
        y = 0
        for c in reversed(coeffs):  # Horner
            y = (y * x + c) % PRIME
        out[int(x)] = y.to_bytes(SHARE_BYTES, "big")
    return out


def combine(shares: Mapping[int, bytes], *, size: int = 32) -> bytes:
    """The secret (``size`` bytes) from shares ``x -> share``: exact with ``threshold`` or more."""
    if not shares:
        raise ValueError("no shares to combine.")
    points = [(int(x), int.from_bytes(y, "big")) for x, y in shares.items()]
    total = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                num = num * (-xj) % PRIME
                den = den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, -1, PRIME)) % PRIME
    if total >= 1 << (8 * size):
        raise ValueError("the shares do not combine to a secret of this size (a share is wrong or forged).")
    return total.to_bytes(size, "big")
