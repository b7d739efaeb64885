"""The cryptographic parts of SecAgg+, all from the ``cryptography`` package (OpenSSL).

- Key agreement: X25519 (Bernstein 2006); a pair of sites derives a 32-byte key from their
  Diffie-Hellman secret with HKDF-SHA256 (RFC 5869), bound to a purpose and the protocol context.
- Mask expansion: ChaCha20 (RFC 8439) keystream from a 32-byte seed, read as ring elements: the
  seeded PRG of Bonawitz et al. 2017.
- Share transport: AES-256-GCM between two sites, its associated data binding sender, receiver,
  job, key epoch, round and kind, so a share replayed from another round or relayed to another site
  does not decrypt.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
NONCE_BYTES = 12


def new_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair as ``(private, public)`` raw 32-byte strings."""
    sk = X25519PrivateKey.generate()
    return (
        sk.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        ),
        public_of(sk),
    )


def public_of(private: X25519PrivateKey | bytes) -> bytes:
    """The raw public key of an X25519 private key (object or raw bytes)."""
    sk = X25519PrivateKey.from_private_bytes(private) if isinstance(private, bytes) else private
    return sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def agree(private: bytes, peer_public: bytes, *, info: bytes) -> bytes:
    """The 32-byte key two sites share: HKDF-SHA256 of their X25519 secret, bound to ``info``."""
    try:
        peer = X25519PublicKey.from_public_bytes(peer_public)
    except ValueError as exc:
        raise ValueError("a peer's public key is not a 32-byte X25519 key.") from exc
    secret = X25519PrivateKey.from_private_bytes(private).exchange(peer)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


def derive(seed: bytes, *, info: bytes) -> bytes:
    """A 32-byte key from ``seed`` for one purpose (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(seed)


def prg(seed: bytes, size: int, dtype: type) -> np.ndarray:
    """``size`` pseudo-random ring elements of ``dtype`` (uint32/uint64) from a 32-byte seed (ChaCha20)."""
    width = np.dtype(dtype).itemsize
    stream = Cipher(algorithms.ChaCha20(seed, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(stream.update(bytes(size * width)), dtype=dtype).copy()


def seal(key: bytes, plaintext: bytes, *, aad: bytes) -> bytes:
    """``plaintext`` encrypted and authenticated under ``key`` (AES-256-GCM, random nonce first)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, *, aad: bytes) -> bytes:
    """The plaintext of :func:`seal`; ``ValueError`` if it was forged, altered, or meant elsewhere."""
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as exc:
        raise ValueError(
            "does not authenticate (forged, altered, replayed or meant for another site)"
        ) from exc
