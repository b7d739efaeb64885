"""A throw-away PKI for in-process SecAgg+ runs: a root CA and a certificate per site, as FLARE provisions.

For tests and the in-process benchmark only; a real federation signs with its startup kits
(:meth:`fedhealth.secagg.identity.Identity.from_startup_kit`). RSA-2048 with SHA-256 by default, as
FLARE's provisioning writes them; ``new_key`` gives EC or Ed25519 keys instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from fedhealth.secagg.identity import Identity


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    digest = (
        None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    )  # Ed25519: built in
    return builder.sign(issuer_key, digest)


def pem_key(key) -> bytes:
    """A private key as PKCS#8 PEM (unencrypted: a throw-away test key)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA-2048 key, as FLARE provisions."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_pki(
    sites: list[str], *, root_name: str = "fedhealth-test-root", new_key: Callable[[], object] = rsa_key
) -> tuple[bytes, dict[str, Identity]]:
    """A root CA (PEM) and each site's :class:`Identity` under it, every key from ``new_key``."""
    root_key = new_key()
    root = _cert(root_name, root_key, root_name, root_key, ca=True)
    root_pem = root.public_bytes(serialization.Encoding.PEM)
    identities = {}
    for site in sites:
        key = new_key()
        cert = _cert(site, key, root_name, root_key, ca=False)
        identities[site] = Identity(
            site, pem_key(key), cert.public_bytes(serialization.Encoding.PEM), root_pem
        )
    return root_pem, identities
