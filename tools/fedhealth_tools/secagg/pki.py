"""A throw-away PKI for in-process SecAgg+ runs: a root CA and a certificate per site, as FLARE provisions.

For tests and the in-process benchmark only; a real federation signs with its startup kits
(:meth:`fedhealth.secagg.identity.Identity.from_startup_kit`). RSA-2048 with SHA-256, as FLARE's
provisioning writes them.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
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
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(
    sites: list[str], *, root_name: str = "fedhealth-test-root"
) -> tuple[bytes, dict[str, Identity]]:
    """A root CA (PEM) and each site's :class:`Identity` under it."""
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = _cert(root_name, root_key, root_name, root_key, ca=True)
    root_pem = root.public_bytes(serialization.Encoding.PEM)
    identities = {}
    for site in sites:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _cert(site, key, root_name, root_key, ca=False)
        identities[site] = Identity(
            site, _pem_key(key), cert.public_bytes(serialization.Encoding.PEM), root_pem
        )
    return root_pem, identities
