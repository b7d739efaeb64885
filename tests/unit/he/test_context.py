"""What each kit's TenSEAL context must be, and the start-up error for each way it can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import tenseal as ts
from nvflare.fuel.sec.security_content_service import SecurityContentManager
from nvflare.lighter.impl.he import HEBuilder

from fedhealth import constants as C
from fedhealth.he.context import HEContextError, check_context, describe_context
from fedhealth_tools.poc.workspace import PocLayout


def _contexts() -> tuple[bytes, bytes]:
    builder = HEBuilder()
    builder.initialize(None, None)
    return builder.get_serialized_context(is_client=False), builder.get_serialized_context(is_client=True)


SERVER, SITE = _contexts()
# (which bytes, load status, expect secret key, secure mode, expected message or None for accepted)
CASES = [
    ("server", "ok", False, True, None),
    ("site", "ok", True, True, None),
    ("server", "ok", True, True, "holds no secret key: a site needs the client context"),
    ("site", "ok", False, True, "holds the secret key: the server must only have the public context"),
    (None, "noSuchContent", True, True, "is missing .*HEBuilder"),
    ("site", "notSigned", True, True, "is not signed by the project .*before SignatureBuilder"),
    ("site", "notSigned", True, False, None),
    ("site", "invalidSignature", True, True, "does not match its signature"),
    ("garbage", "ok", True, True, "is not a TenSEAL context"),
    ("site", "notManaged", True, True, "cannot be verified"),
]


@pytest.mark.parametrize(("which", "status", "secret", "secure", "message"), CASES)
def test_check_context(
    which: str | None, status: str, secret: bool, secure: bool, message: str | None
) -> None:
    data = {"server": SERVER, "site": SITE, "garbage": b"not a context", None: None}[which]
    path = Path("startup") / "ctx.tenseal"
    if message is None:
        assert isinstance(
            check_context(data, path=path, load_status=status, expect_secret_key=secret, secure=secure),
            ts.Context,
        )
        return
    with pytest.raises(HEContextError, match=message) as err:
        check_context(data, path=path, load_status=status, expect_secret_key=secret, secure=secure)
    assert str(path) in str(err.value)  # the message names the file


def test_flare_default_parameters_are_described() -> None:
    info = describe_context(ts.context_from(SITE))
    assert info == {
        "scheme": "CKKS",
        "poly_modulus_degree": 8192,
        "slots": 4096,
        "scale_bits": 40,
        "has_secret_key": True,
    }


def test_provisioned_kits_are_signed_and_only_sites_hold_the_secret_key(he_kits: PocLayout) -> None:
    server_startup = he_kits.kit(he_kits.server) / "startup"
    data, status = SecurityContentManager(str(server_startup)).load_content(C.HE_SERVER_CONTEXT_FILE)
    assert status.value == "ok"
    assert (
        describe_context(check_context(data, path=server_startup, expect_secret_key=False))["has_secret_key"]
        is False
    )
    # Nothing in the server's kit is a context with a secret key.
    for path in he_kits.kit(he_kits.server).rglob("*.tenseal"):
        assert ts.context_from(path.read_bytes()).is_private() is False, path
    for site in he_kits.sites:
        startup = he_kits.kit(site) / "startup"
        data, status = SecurityContentManager(str(startup)).load_content(C.HE_SITE_CONTEXT_FILE)
        assert status.value == "ok", site
        assert check_context(data, path=startup, expect_secret_key=True).is_private(), site


def test_a_changed_context_fails_its_signature(he_kits: PocLayout, tmp_path: Path) -> None:
    import shutil

    startup = tmp_path / "startup"
    shutil.copytree(he_kits.kit(he_kits.sites[0]) / "startup", startup)
    # Replace the site's context by another valid one (as an attacker would): the signature no longer fits.
    (startup / C.HE_SITE_CONTEXT_FILE).write_bytes(SITE)
    data, status = SecurityContentManager(str(startup)).load_content(C.HE_SITE_CONTEXT_FILE)
    with pytest.raises(HEContextError, match="does not match its signature"):
        check_context(
            data, path=startup / C.HE_SITE_CONTEXT_FILE, load_status=status.value, expect_secret_key=True
        )
