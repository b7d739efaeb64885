"""X25519 + HKDF key agreement, the ChaCha20 mask PRG and AES-GCM share sealing, against the RFCs' vectors."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pytest

from fedhealth.secagg import crypto

# RFC 7748 §6.1: Alice's and Bob's X25519 keys and their shared secret
ALICE_SK = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PK = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_SK = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PK = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
# RFC 8439 A.1 test vector #1: ChaCha20 keystream of the zero key, zero nonce, counter 0
CHACHA_ZERO = bytes.fromhex("76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7")
# (where one byte of a sealed share is altered: nonce, ciphertext, tag)
ALTERED = [0, 11, 12, 40, -17, -1]


def _hkdf_sha256(ikm: bytes, info: bytes) -> bytes:
    """RFC 5869 with no salt, 32 bytes, from the standard library (an independent implementation)."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def test_public_keys_match_rfc7748() -> None:
    assert crypto.public_of(ALICE_SK) == ALICE_PK
    assert crypto.public_of(BOB_SK) == BOB_PK


def test_agree_is_hkdf_of_the_x25519_secret() -> None:
    info = b"fedhealth-secagg-pair|job|1"
    assert crypto.agree(ALICE_SK, BOB_PK, info=info) == _hkdf_sha256(SHARED, info)
    assert crypto.agree(BOB_SK, ALICE_PK, info=info) == _hkdf_sha256(SHARED, info)
    assert crypto.agree(ALICE_SK, BOB_PK, info=b"another purpose") != crypto.agree(
        ALICE_SK, BOB_PK, info=info
    )


def test_new_keypairs_agree_pairwise_only() -> None:
    (a_sk, a_pk), (b_sk, b_pk), (c_sk, c_pk) = (crypto.new_keypair() for _ in range(3))
    assert len(a_sk) == len(a_pk) == crypto.KEY_BYTES and crypto.public_of(a_sk) == a_pk
    ab = crypto.agree(a_sk, b_pk, info=b"x")
    assert ab == crypto.agree(b_sk, a_pk, info=b"x") and len(ab) == 32
    assert ab not in (crypto.agree(a_sk, c_pk, info=b"x"), crypto.agree(c_sk, b_pk, info=b"x"))


@pytest.mark.parametrize("peer", [bytes(31), bytes(33), b""])
def test_agree_refuses_a_malformed_public_key(peer: bytes) -> None:
    with pytest.raises(ValueError, match="a peer's public key is not a 32-byte X25519 key"):
        crypto.agree(ALICE_SK, peer, info=b"x")


def test_derive() -> None:
    assert crypto.derive(SHARED, info=b"a") == _hkdf_sha256(SHARED, b"a")
    assert crypto.derive(SHARED, info=b"a") != crypto.derive(SHARED, info=b"b")


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_prg_is_the_chacha20_keystream(dtype: type) -> None:
    words = 32 // np.dtype(dtype).itemsize
    stream = crypto.prg(bytes(32), words, dtype)
    assert stream.dtype == dtype and stream.shape == (words,)
    assert stream.tobytes() == CHACHA_ZERO
    assert np.array_equal(crypto.prg(bytes(32), 3, dtype), stream[:3])  # a prefix of the same stream
    assert stream.flags.writeable


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_prg_looks_uniform(dtype: type) -> None:
    n = 100_000
    a, b = crypto.prg(b"\x01" * 32, n, dtype), crypto.prg(b"\x02" * 32, n, dtype)
    bits = np.dtype(dtype).itemsize * 8
    top = (a >> np.array(bits - 1, dtype)).mean()
    assert abs(top - 0.5) < 0.01  # 6 standard deviations
    assert abs(a.astype(np.float64).mean() / 2.0**bits - 0.5) < 0.01
    assert np.mean(a == b) < 1e-3


def test_seal_round_trip_and_layout() -> None:
    key, aad = b"k" * 32, b"fedhealth-secagg-share|job|1|2|b|site-01|site-02"
    sealed = crypto.seal(key, b"share", aad=aad)
    assert len(sealed) == crypto.NONCE_BYTES + len(b"share") + 16
    assert crypto.open_sealed(key, sealed, aad=aad) == b"share"
    assert crypto.seal(key, b"share", aad=aad) != sealed  # a fresh nonce each time


@pytest.mark.parametrize("where", ALTERED)
def test_an_altered_byte_does_not_authenticate(where: int) -> None:
    key, aad = b"k" * 32, b"aad"
    sealed = bytearray(crypto.seal(key, bytes(66), aad=aad))
    sealed[where] ^= 0x01
    with pytest.raises(ValueError, match=r"does not authenticate \(forged, altered, replayed"):
        crypto.open_sealed(key, bytes(sealed), aad=aad)


@pytest.mark.parametrize(
    ("key", "aad", "sealed_len"),
    [
        (b"k" * 32, b"another round", None),
        (b"j" * 32, b"aad", None),
        (b"k" * 32, b"aad", 20),
        (b"k" * 32, b"aad", 5),
    ],
)
def test_another_key_context_or_truncation_does_not_authenticate(
    key: bytes, aad: bytes, sealed_len: int | None
) -> None:
    sealed = crypto.seal(b"k" * 32, b"share", aad=b"aad")
    with pytest.raises(ValueError, match="does not authenticate"):
        crypto.open_sealed(key, sealed[:sealed_len], aad=aad)
