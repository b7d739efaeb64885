"""Shamir sharing over GF(2^521 - 1): any ``t`` shares recover the secret, ``t - 1`` say nothing of it."""

from __future__ import annotations

import itertools
import os
import secrets

import pytest

from fedhealth.secagg.shamir import MAX_SECRET_BYTES, PRIME, SHARE_BYTES, combine, split

# (threshold, number of shares)
SCHEMES = [(1, 1), (2, 2), (2, 3), (3, 4), (3, 5), (5, 5), (4, 7), (9, 16)]
# (secret, threshold, xs, the refusal's message)
BAD_SPLITS = [
    (bytes(65), 2, [1, 2, 3], "a secret has at most 64 bytes, got 65"),
    (bytes(32), 2, [1, 2, 2], r"share points must be distinct positive integers, got \[1, 2, 2\]"),
    (bytes(32), 2, [0, 1, 2], "share points must be distinct positive integers"),
    (bytes(32), 0, [1, 2, 3], "threshold must be between 1 and the 3 shares, got 0"),
    (bytes(32), 4, [1, 2, 3], "threshold must be between 1 and the 3 shares, got 4"),
]


def _value(shares: dict[int, bytes]) -> int:
    """What ``shares`` interpolate to at 0, as an integer (no size check)."""
    return int.from_bytes(combine(shares, size=SHARE_BYTES), "big")


def _lagrange_at(points: dict[int, int], x: int) -> int:
    """The polynomial through ``points`` (degree ``len(points) - 1``) evaluated at ``x``, mod PRIME."""
    total = 0
    for xi, yi in points.items():
        num, den = 1, 1
        for xj in points:
            if xj != xi:
                num = num * (x - xj) % PRIME
                den = den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, -1, PRIME)) % PRIME
    return total


@pytest.mark.parametrize(("threshold", "n"), SCHEMES)
def test_any_threshold_shares_recover_the_secret(threshold: int, n: int) -> None:
    secret = os.urandom(32)
    xs = [3 * i + 1 for i in range(n)]  # the points need not be 1..n
    shares = split(secret, threshold=threshold, xs=xs)
    assert sorted(shares) == xs and {len(s) for s in shares.values()} == {SHARE_BYTES}
    subsets = list(itertools.combinations(xs, threshold))[:50]
    for subset in subsets:
        assert combine({x: shares[x] for x in subset}) == secret
    assert combine(shares) == secret  # more than the threshold: still exact


@pytest.mark.parametrize(
    "secret",
    [bytes(32), b"\x00" * 31 + b"\x01", b"\xff" * 32, os.urandom(MAX_SECRET_BYTES)],
    ids=[
        "zeros",
        "one",
        "all-ones",
        "random-64-bytes",
    ],  # fixed ids: xdist workers must collect the same tests
)
def test_secrets_of_every_shape(secret: bytes) -> None:
    shares = split(secret, threshold=3, xs=[1, 2, 3, 4])
    assert combine({x: shares[x] for x in (1, 3, 4)}, size=len(secret)) == secret


@pytest.mark.parametrize(("threshold", "n"), [s for s in SCHEMES if s[0] > 1])
def test_fewer_than_threshold_shares_do_not_give_the_secret(threshold: int, n: int) -> None:
    secret = os.urandom(32)
    shares = split(secret, threshold=threshold, xs=list(range(1, n + 1)))
    for subset in itertools.islice(itertools.combinations(shares, threshold - 1), 20):
        assert _value({x: shares[x] for x in subset}) != int.from_bytes(secret, "big")
        with pytest.raises(ValueError, match="do not combine to a secret of this size"):
            combine({x: shares[x] for x in subset})  # the value is (almost surely) not even 32 bytes


@pytest.mark.parametrize("threshold", [2, 3, 5, 9])
def test_fewer_than_threshold_shares_fit_any_secret(threshold: int) -> None:
    """For ``t - 1`` shares and any other secret there is a polynomial of degree ``t - 1`` through both.

    Construct it: the ``t`` points ``(0, other)`` and the ``t - 1`` shares define one polynomial of
    degree ``t - 1``; its value at an unused point is a share that, with the ``t - 1`` real ones,
    combines to ``other``. So the ``t - 1`` shares are as consistent with ``other`` as with the secret.
    """
    secret, other = os.urandom(32), os.urandom(32)
    shares = split(secret, threshold=threshold, xs=list(range(1, threshold + 2)))
    seen = {x: int.from_bytes(shares[x], "big") for x in range(1, threshold)}  # t - 1 shares
    unused = threshold + 1
    for candidate in (other, secret):
        poly = {0: int.from_bytes(candidate, "big"), **seen}
        assert all(_lagrange_at(poly, x) == y for x, y in seen.items())
        share = _lagrange_at(poly, unused).to_bytes(SHARE_BYTES, "big")
        assert combine({**{x: shares[x] for x in seen}, unused: share}) == candidate
    # the real share at that point is the one the real polynomial gives
    assert combine({**{x: shares[x] for x in seen}, unused: shares[unused]}) == secret


def test_shares_are_fresh_each_time() -> None:
    secret = bytes(32)
    first, second = split(secret, threshold=2, xs=[1, 2]), split(secret, threshold=2, xs=[1, 2])
    assert first[1] != second[1]
    assert all(int.from_bytes(s, "big") < PRIME for s in first.values())


@pytest.mark.parametrize(("secret", "threshold", "xs", "message"), BAD_SPLITS)
def test_split_refusals(secret: bytes, threshold: int, xs: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split(secret, threshold=threshold, xs=xs)


def test_combine_refusals() -> None:
    with pytest.raises(ValueError, match="no shares to combine"):
        combine({})
    shares = split(os.urandom(32), threshold=3, xs=[1, 2, 3])
    forged = {**shares, 2: secrets.randbelow(PRIME).to_bytes(SHARE_BYTES, "big")}
    with pytest.raises(
        ValueError, match=r"do not combine to a secret of this size \(a share is wrong or forged\)"
    ):
        combine(forged)
