"""Checking and describing the TenSEAL CKKS contexts that provisioning puts into startup kits.

FLARE's ``HEBuilder`` writes one CKKS context per kit: the server's ``server_context.tenseal``
holds the public parameters and relinearization keys only, each site's ``client_context.tenseal``
also the secret key the sites share (Cheon, Kim, Kim and Song, "Homomorphic Encryption for
Arithmetic of Approximate Numbers", ASIACRYPT 2017). A server that can decrypt would defeat the
purpose, so the server's context must not hold a secret key, and every site's must.
"""

from __future__ import annotations

import math
from pathlib import Path

import tenseal as ts

# FLARE's LoadResult values (nvflare.fuel.sec.security_content_service) and what they mean here.
LOAD_PROBLEMS = {
    "noSuchContent": "is missing (was the kit provisioned with nvflare.lighter.impl.he.HEBuilder?)",
    "notSigned": "is not signed by the project (HEBuilder must run before SignatureBuilder)",
    "invalidSignature": "does not match its signature: the file was changed after provisioning",
    "invalidContent": "cannot be read",
    "notManaged": "cannot be verified: this process has no startup kit (security content not initialized)",
}


class HEContextError(ValueError):
    """A kit's TenSEAL context is missing, unsigned, unreadable or of the wrong kind."""


def check_context(
    data: bytes | None,
    *,
    path: str | Path,
    load_status: str = "ok",
    expect_secret_key: bool,
    secure: bool = True,
) -> ts.Context:
    """Load a serialized context and check that it is what this participant must hold.

    Args:
        data: the file's bytes (``None`` when it could not be read).
        path: where the file is, for the message.
        load_status: FLARE's ``LoadResult`` value for the file (``"ok"``, ``"notSigned"``, ...).
        expect_secret_key: True at a site (it decrypts), False at the server (it must not be able to).
        secure: whether the kit is in secure mode; then an unsigned or altered file is refused.

    Returns:
        The TenSEAL context.

    Raises:
        HEContextError: naming ``path`` and what is wrong with it.
    """
    problems = dict(LOAD_PROBLEMS)
    if not secure:
        problems.pop("notSigned")
        problems.pop("invalidSignature")
    if load_status in problems or not data:
        reason = problems.get(load_status, LOAD_PROBLEMS["noSuchContent"])
        raise HEContextError(f"TenSEAL context {path} {reason}.")
    try:
        context = ts.context_from(data)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise HEContextError(f"TenSEAL context {path} is not a TenSEAL context: {exc}") from exc
    info = describe_context(context)
    if info["scheme"] != "CKKS":
        raise HEContextError(f"TenSEAL context {path} uses {info['scheme']}, but the HE jobs need CKKS.")
    if expect_secret_key and not info["has_secret_key"]:
        raise HEContextError(
            f"TenSEAL context {path} holds no secret key: a site needs the client context to decrypt."
        )
    if not expect_secret_key and info["has_secret_key"]:
        raise HEContextError(
            f"TenSEAL context {path} holds the secret key: the server must only have the public context."
        )
    return context


def describe_context(context: ts.Context) -> dict:
    """Scheme, polynomial modulus degree N, slots per ciphertext (N/2), scale (bits), secret key or not."""
    parms = context.seal_context().data.key_context_data().parms()
    scheme = str(parms.scheme()).rsplit(".", 1)[-1].upper()
    degree = int(parms.poly_modulus_degree())
    return {
        "scheme": scheme,
        "poly_modulus_degree": degree,
        "slots": degree // 2,
        "scale_bits": round(math.log2(context.global_scale)) if context.global_scale > 0 else None,
        "has_secret_key": bool(context.is_private()),
    }
