"""Signed protocol messages: a site signs its SecAgg+ public keys with its provisioned identity.

The server relays every site's public keys. If it could swap them for its own, it could compute
every pairwise mask (a man-in-the-middle); so each site signs its keys, with the job, key epoch and
its name, using the private key of its FLARE startup kit (``client.key``), and every other site
checks the signature against the certificate (``client.crt``) that the project's root CA
(``rootCA.pem``, in every kit) signed for that site name. A key advertisement from another job, an
older epoch or another site, or one whose certificate the root CA did not sign, is refused.
RSA (FLARE's provisioning), EC and Ed25519 keys are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID


def _sign(key, data: bytes) -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(
            data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH), hashes.SHA256()
        )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise ValueError(f"unsupported identity key type {type(key).__name__}.")


def _verify(public, signature: bytes, data: bytes) -> None:
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(
            signature,
            data,
            padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
            hashes.SHA256(),
        )
    elif isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(signature, data)
    else:
        raise InvalidSignature(f"unsupported key type {type(public).__name__}")


def _issued_by(cert: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """A site's signing identity: its name, private key and certificate (PEM), and the root CA (PEM)."""

    name: str
    key_pem: bytes
    cert_pem: bytes
    root_pem: bytes

    @classmethod
    def from_startup_kit(cls, startup_dir: Path, name: str) -> Identity:
        """The identity FLARE provisioned into a site's ``startup/`` folder."""
        files = {
            k: Path(startup_dir) / f
            for k, f in (("key", "client.key"), ("cert", "client.crt"), ("root", "rootCA.pem"))
        }
        missing = [str(p.name) for p in files.values() if not p.is_file()]
        if missing:
            raise ValueError(
                f"the site's startup kit lacks {missing}: SecAgg+ signs with the provisioned identity."
            )
        return cls(name, files["key"].read_bytes(), files["cert"].read_bytes(), files["root"].read_bytes())

    def sign(self, data: bytes) -> bytes:
        """``data`` signed with the site's private key."""
        return _sign(_private_key(self.key_pem), data)


@lru_cache(maxsize=64)
def _private_key(pem: bytes):
    """The loaded key of a PEM (loading checks an RSA key, about 30 ms: once per key, not per signature)."""
    return serialization.load_pem_private_key(pem, password=None)


def verify_signed(*, name: str, data: bytes, signature: bytes, cert_pem: bytes, root_pem: bytes) -> None:
    """Check that ``name``'s certificate, issued by the root CA, signed ``data``.

    Raises:
        ValueError: the certificate is not the root CA's, is for another name, or the signature fails.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        root = x509.load_pem_x509_certificate(root_pem)
    except ValueError as exc:
        raise ValueError(f"{name}: its certificate is not a PEM X.509 certificate") from exc
    if not _issued_by(cert, root):
        raise ValueError(f"{name}: its certificate was not issued by the project's root CA")
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [name]:
        raise ValueError(f"{name}: its certificate is for {names}, not for {name!r}")
    try:
        _verify(cert.public_key(), signature, data)
    except InvalidSignature as exc:
        raise ValueError(f"{name}: the signature does not match its certificate (forged or altered)") from exc
