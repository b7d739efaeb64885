"""Signing with a site's provisioned identity, and each way a signed message is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from fedhealth.secagg.identity import Identity, verify_signed
from fedhealth_tools.secagg.pki import make_pki, pem_key

DATA = b"fedhealth-secagg-advert|job-a|1|site-01|c|s"
# (how the message is altered, the refusal's message)
FORGERIES = [
    ("data", r"site-01: the signature does not match its certificate \(forged or altered\)"),
    ("other site's signature", "site-01: the signature does not match its certificate"),
    ("other site's certificate", r"site-01: its certificate is for \['site-02'\], not for 'site-01'"),
    ("other root's certificate", "site-01: its certificate was not issued by the project's root CA"),
    ("not a certificate", "site-01: its certificate is not a PEM X.509 certificate"),
]


def _check(
    identity: Identity, *, data: bytes = DATA, signature: bytes | None = None, cert: bytes | None = None
) -> None:
    verify_signed(
        name=identity.name,
        data=data,
        signature=identity.sign(DATA) if signature is None else signature,
        cert_pem=identity.cert_pem if cert is None else cert,
        root_pem=identity.root_pem,
    )


def test_rsa_identity_from_the_pki(pki) -> None:
    _, ids = pki
    _check(ids["site-01"])
    assert (
        b"BEGIN PRIVATE KEY" in ids["site-01"].key_pem and ids["site-01"].root_pem == ids["site-02"].root_pem
    )


@pytest.mark.parametrize(
    "make_key", [lambda: ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate]
)
def test_ec_and_ed25519_identities(make_key) -> None:
    _, ids = make_pki(["site-01"], new_key=make_key)  # the root's key of the same kind
    identity = ids["site-01"]
    _check(identity)
    with pytest.raises(ValueError, match="the signature does not match"):
        _check(identity, data=DATA + b"x")


@pytest.mark.parametrize(("forgery", "message"), FORGERIES)
def test_forged_messages_are_refused(pki, other_pki, forgery: str, message: str) -> None:
    _, ids = pki
    me, other = ids["site-01"], ids["site-02"]
    changes = {
        "data": {"data": DATA.replace(b"|1|", b"|2|")},
        "other site's signature": {"signature": other.sign(DATA)},
        "other site's certificate": {"signature": other.sign(DATA), "cert": other.cert_pem},
        # another project's site-01: a valid signature, a certificate under another root
        "other root's certificate": {
            "signature": other_pki[1]["site-01"].sign(DATA),
            "cert": other_pki[1]["site-01"].cert_pem,
        },
        "not a certificate": {"cert": b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"},
    }[forgery]
    with pytest.raises(ValueError, match=message):
        _check(me, **changes)


def test_a_key_that_cannot_sign_is_refused() -> None:
    identity = Identity("site-01", pem_key(x25519.X25519PrivateKey.generate()), b"", b"")
    with pytest.raises(ValueError, match="unsupported identity key type X25519PrivateKey"):
        identity.sign(DATA)


def test_from_startup_kit(pki, tmp_path: Path) -> None:
    mine = pki[1]["site-03"]
    (tmp_path / "client.key").write_bytes(mine.key_pem)
    with pytest.raises(
        ValueError, match=r"lacks \['client.crt', 'rootCA.pem'\]: SecAgg\+ signs with the provisioned"
    ):
        Identity.from_startup_kit(tmp_path, "site-03")
    (tmp_path / "client.crt").write_bytes(mine.cert_pem)
    (tmp_path / "rootCA.pem").write_bytes(mine.root_pem)
    assert Identity.from_startup_kit(tmp_path, "site-03") == mine
