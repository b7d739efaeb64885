"""The site's FAB check: what a FAB may hold and which ClientApps a site runs (fedhealth.flower.fab_policy).

FABs are built here the way ``flwr build`` lays them out (``pyproject.toml`` and the ``.info/CONTENT``
manifest, ``path,sha256,size_bits`` per file); one case builds the kit's own app with Flower itself
(``.venv-flower``), so a change in Flower's FAB format shows up here.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from fedhealth.flower.fab_policy import FabPolicy, FabRefusedError, check_fab

ROOT = Path(__file__).resolve().parents[3]
FLOWER_PYTHON = ROOT / ".venv-flower" / "bin" / "python"
APP = ROOT / "custom" / "fedhealth" / "flower" / "apps" / "heart_flower"
HEART = "fedhealth.flower.heart_flower:client_app"
POLICY = FabPolicy(clientapps=frozenset({HEART}))
PYPROJECT = """
[project]
name = "heart-app"
version = "1.0.0"
[tool.flwr.app]
publisher = "fedhealth"
[tool.flwr.app.components]
serverapp = "fedhealth.flower.heart_flower:server_app"
clientapp = "{clientapp}"
"""


def fab(files: dict[str, bytes], *, manifest: bool = True) -> tuple[bytes, str]:
    """A FAB of ``files`` (plus its manifest) and its SHA-256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
        if manifest:
            lines = [f"{p},{hashlib.sha256(d).hexdigest()},{len(d) * 8}" for p, d in files.items()]
            z.writestr(".info/CONTENT", "\n".join(lines))
    content = buffer.getvalue()
    return content, hashlib.sha256(content).hexdigest()


def pyproject(clientapp: str = HEART) -> bytes:
    return PYPROJECT.replace("{clientapp}", clientapp).encode()


# (case id, files, policy, expected message part): every way a FAB is refused.
REFUSED = [
    (
        "code-file",
        {"pyproject.toml": pyproject(), "heart.py": b"import os"},
        POLICY,
        "carries file(s) ['heart.py']",
    ),
    (
        "code-in-folder",
        {"pyproject.toml": pyproject(), "fedhealth/flower/heart_flower.py": b"x = 1"},
        POLICY,
        "carries file(s) ['fedhealth/flower/heart_flower.py']",
    ),
    (
        "unknown-clientapp",
        {"pyproject.toml": pyproject("evil.app:client_app")},
        POLICY,
        "'evil.app:client_app' is not one this site lists",
    ),
    ("site-lists-none", {"pyproject.toml": pyproject()}, FabPolicy(), "this site lists no Flower app"),
    (
        "no-clientapp",
        {"pyproject.toml": b'[project]\nname = "x"\n'},
        POLICY,
        "names no [tool.flwr.app.components] clientapp",
    ),
    ("no-pyproject", {"README.md": b"hi"}, POLICY, "carries file(s) ['README.md']"),
    ("bad-toml", {"pyproject.toml": b"[project"}, POLICY, "is not valid TOML"),
    (
        "not-pinned",
        {"pyproject.toml": pyproject()},
        FabPolicy(clientapps=frozenset({HEART}), fab_sha256=frozenset({"0" * 64})),
        "this site pins its FABs",
    ),
]


@pytest.mark.parametrize(("files", "policy", "why"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_fab_names_site_and_reason(files: dict, policy: FabPolicy, why: str) -> None:
    content, sha = fab(files)
    with pytest.raises(FabRefusedError) as err:
        check_fab(content, sha, policy, site="cleveland")
    message = str(err.value)
    assert message.startswith("site cleveland refuses the Flower app ")
    assert f"(FAB sha256 {sha[:12]})" in message
    assert why in message
    assert "local/fedhealth_site.json lists under 'flower_apps'.'clientapps'" in message


def test_good_fab_accepted_with_its_hash_and_clientapp() -> None:
    content, sha = fab({"pyproject.toml": pyproject()})
    info = check_fab(content, sha, POLICY, site="hungary")
    assert (info.sha256, info.name, info.clientapp) == (sha, "heart-app", HEART)
    pinned = FabPolicy(clientapps=frozenset({HEART}), fab_sha256=frozenset({sha}))
    assert check_fab(content, sha, pinned, site="hungary").sha256 == sha


def test_tampered_fab_refused() -> None:
    content, sha = fab({"pyproject.toml": pyproject()})
    other, _ = fab({"pyproject.toml": pyproject(), "x.py": b"1"})
    with pytest.raises(FabRefusedError, match=r"does not match the sha256 it declares \(" + sha[:12]):
        check_fab(other, sha, POLICY, site="cleveland")  # another FAB's bytes under the good FAB's hash
    flipped = content[:-1] + bytes([content[-1] ^ 1])
    with pytest.raises(FabRefusedError, match="changed on the way"):
        check_fab(flipped, sha, POLICY, site="cleveland")


def test_manifest_must_match_files() -> None:
    content, sha = fab({"pyproject.toml": pyproject()}, manifest=False)
    with pytest.raises(FabRefusedError, match=r"no manifest \.info/CONTENT"):
        check_fab(content, sha, POLICY, site="cleveland")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("pyproject.toml", pyproject())
        z.writestr(".info/CONTENT", f"pyproject.toml,{'0' * 64},8")
    bad = buffer.getvalue()
    with pytest.raises(FabRefusedError, match="does not match its files"):
        check_fab(bad, hashlib.sha256(bad).hexdigest(), POLICY, site="cleveland")


def test_not_a_zip_refused() -> None:
    data = b"not a zip"
    with pytest.raises(FabRefusedError, match="not a zip archive"):
        check_fab(data, hashlib.sha256(data).hexdigest(), POLICY, site="cleveland")


# (case id, settings, expected error part)
BAD_SETTINGS = [
    ("not-object", {"flower_apps": ["x"]}, "must be an object"),
    ("unknown-key", {"flower_apps": {"clientapps": [], "code": []}}, "must be an object"),
    ("not-list", {"flower_apps": {"clientapps": HEART}}, "flower_apps.clientapps must be a list of strings"),
    (
        "no-attribute",
        {"flower_apps": {"clientapps": ["fedhealth.flower.heart_flower"]}},
        "is not module.path:attribute",
    ),
    (
        "bad-hash",
        {"flower_apps": {"clientapps": [HEART], "fab_sha256": ["ABC"]}},
        "is not a lower-case hex SHA-256",
    ),
]


@pytest.mark.parametrize(("settings", "why"), [c[1:] for c in BAD_SETTINGS], ids=[c[0] for c in BAD_SETTINGS])
def test_bad_settings_name_the_file(settings: dict, why: str) -> None:
    with pytest.raises(ValueError, match="^local/fedhealth_site.json: ") as err:
        FabPolicy.from_settings(settings)
    assert why in str(err.value)


def test_settings_read() -> None:
    assert FabPolicy.from_settings({}) == FabPolicy()
    sha = "a" * 64
    policy = FabPolicy.from_settings({"flower_apps": {"clientapps": [HEART], "fab_sha256": [sha]}})
    assert policy == FabPolicy(frozenset({HEART}), frozenset({sha}))


BUILD = """
import hashlib, sys
from pathlib import Path
from flwr.cli.build import build_fab_from_disk
sys.stdout.buffer.write(build_fab_from_disk(Path(sys.argv[1])))
"""


@pytest.mark.skipif(
    not FLOWER_PYTHON.exists(), reason=".venv-flower (make flower-env) is missing: no flwr to build a FAB"
)
def test_kit_app_built_by_flower_is_accepted_and_stable() -> None:
    built = [
        subprocess.run([FLOWER_PYTHON, "-c", BUILD, APP], capture_output=True, check=True).stdout
        for _ in range(2)
    ]
    assert built[0] == built[1]  # deterministic: a site can pin its hash
    sha = hashlib.sha256(built[0]).hexdigest()
    info = check_fab(built[0], sha, POLICY, site="va_long_beach")
    assert info.name == "fedhealth-heart-flower" and info.clientapp == HEART
    with zipfile.ZipFile(io.BytesIO(built[0])) as z:
        assert sorted(z.namelist()) == [".info/CONTENT", "pyproject.toml"]
