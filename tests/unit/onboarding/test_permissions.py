"""Preflight's permission warnings, on real files and modes.

The rule is the kernel's permission bits for a given user (``fedhealth.onboarding.permissions``).
Most rows check it for a user that is *not* the one running the test (another uid, and the files'
group as one of its groups, or not), so they mean the same as root and as a normal user: no row
needs ``os.access``, which says "writable" for everything when the test runs as root. The rows
about the user running the test, and the rows that need ``chown``, are skipped where they cannot
mean what they say.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fedhealth import constants as C
from fedhealth.onboarding import preflight
from fedhealth.onboarding.permissions import Identity, permission_warnings, replaceable, writable
from fedhealth.onboarding.preflight import KitCheck, check_kit, summary

IS_ROOT = os.geteuid() == 0
OTHER_UID = 54321  # a uid that owns nothing here
HOSPITAL_FILE = "Doe_Jane_MRN0042.csv"  # a data file name a hospital chose: never printed

# (file mode, the user owns the file, the file's group is one of the user's, writable)
FILE_MODES = [
    (0o644, True, True, True),
    (0o444, True, True, False),
    (0o464, True, True, False),  # the owner's bits decide for the owner, even if the group may write
    (0o664, False, True, True),
    (0o644, False, True, False),
    (0o646, False, False, True),  # anyone may write
    (0o640, False, False, False),
    (0o606, False, True, False),  # a group member gets the group's bits, not the others'
]
# (parent mode, parent's owner is the user, folder's owner is the user, replaceable)
PARENTS = [
    (0o755, False, False, False),  # parent not writable to the user
    (0o770, False, False, True),  # group-writable parent: rename away and replace
    (0o1770, False, False, False),  # sticky bit, neither is the user's: FLARE's kit folder as documented
    (0o1770, False, True, True),  # sticky, but the folder is the user's own
    (0o1770, True, False, True),  # sticky, but the parent is the user's own
]


def _user_for(path: Path, *, owner: bool, group: bool) -> Identity:
    """A user (not the one running the test) who owns ``path`` or not, and is in its group or not."""
    st = path.stat()
    uid = st.st_uid if owner else OTHER_UID + 1
    return Identity("flare", uid, frozenset({st.st_gid} if group else {st.st_gid + 1}))


@pytest.mark.parametrize(("mode", "owner", "group", "expected"), FILE_MODES)
def test_writable_follows_the_permission_bits_of_the_users_class(
    tmp_path: Path, mode: int, owner: bool, group: bool, expected: bool
) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    if IS_ROOT:  # a file root owns would make its owner root, who writes everything
        os.chown(path, OTHER_UID, -1)
    path.chmod(mode)
    assert writable(path, _user_for(path, owner=owner, group=group)) is expected
    assert writable(path, Identity("root", 0, frozenset({0}))) is True  # root writes everything


@pytest.mark.parametrize(("mode", "parent_owner", "folder_owner", "expected"), PARENTS)
def test_a_folder_is_replaceable_when_its_parent_lets_the_user_rename_it(
    tmp_path: Path, mode: int, parent_owner: bool, folder_owner: bool, expected: bool
) -> None:
    parent = tmp_path / "kit"
    folder = parent / "local"
    folder.mkdir(parents=True)
    if parent_owner or folder_owner:
        if not IS_ROOT:
            pytest.skip("needs chown (root) to give the parent and the folder different owners")
        os.chown(parent if parent_owner else folder, OTHER_UID, -1)
    parent.chmod(mode)
    who = Identity("flare", OTHER_UID, frozenset({parent.stat().st_gid}))  # in the parent's group
    assert replaceable(folder, who) is expected


# ----------------------------------------------------------------------------------------- a site kit
def _site_kit(tmp_path: Path, *, data_root: str | None = None) -> Path:
    """A site kit locked as the deployment guide says: kit 1770, startup/ local/ data 750/640."""
    kit = tmp_path / "cleveland"
    (kit / "startup").mkdir(parents=True)
    (kit / "local").mkdir()
    (kit / "startup" / "fed_client.json").write_text("{}")
    (kit / "startup" / "client.key").write_text("key")
    settings = {C.SITE_DATA_ROOT_KEY: data_root} if data_root else {}
    (kit / "local" / C.SITE_CONFIG_FILE).write_text(json.dumps(settings))
    data = Path(data_root) if data_root else kit / "data"
    (data / C.HEART_DATASET_DIR).mkdir(parents=True)
    (data / C.HEART_DATASET_DIR / HOSPITAL_FILE).write_text("age\n63\n")
    for folder in (kit / "startup", kit / "local", data):
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o750 if path.is_dir() else 0o640)
    kit.chmod(0o1770)
    return kit


def _flare(kit: Path) -> Identity:
    """FLARE's user: in the kit's group, owning none of it (the files stand for root's)."""
    return _user_for(kit, owner=False, group=True)


# (what is changed in a locked kit, fragments of the warnings; [] = no warning)
KIT_CASES = [
    ("nothing", lambda kit: None, []),
    (
        "a local file group-writable",
        lambda kit: (kit / "local" / C.SITE_CONFIG_FILE).chmod(0o660),
        ["local/ is writable by user 'flare'", "local/fedhealth_site.json", "chmod -R u=rwX,g=rX,o="],
    ),
    (
        "startup/ group-writable",
        lambda kit: (kit / "startup").chmod(0o770),
        ["startup/ is writable by user 'flare'", "(startup/)"],
    ),
    (
        "a data file group-writable",
        lambda kit: (kit / "data" / C.HEART_DATASET_DIR / HOSPITAL_FILE).chmod(0o660),
        ["the data folder", "is writable by user 'flare'", "0 folder(s) and 1 file(s)"],
    ),
    (
        "kit folder without the sticky bit",
        lambda kit: kit.chmod(0o770),
        ["startup/ can be renamed away and replaced", "local/ can be renamed away", "chmod 1770"],
    ),
]


@pytest.mark.parametrize(("case", "change", "fragments"), KIT_CASES, ids=[c[0] for c in KIT_CASES])
def test_permission_warnings_of_a_site_kit(tmp_path: Path, case: str, change, fragments: list[str]) -> None:
    kit = _site_kit(tmp_path)
    change(kit)
    warnings = permission_warnings(kit, _flare(kit))
    text = "\n".join(warnings)
    if not fragments:
        assert warnings == []
    for fragment in fragments:
        assert fragment in text, text
    assert HOSPITAL_FILE not in text


def test_the_data_folder_comes_from_the_sites_own_setting(tmp_path: Path) -> None:
    outside = tmp_path / "pacs_export"
    kit = _site_kit(tmp_path, data_root=str(outside))
    (outside / C.HEART_DATASET_DIR).chmod(0o770)
    warnings = permission_warnings(kit, _flare(kit))
    assert len(warnings) == 1 and f"the data folder ({outside})" in warnings[0]
    assert "1 folder(s) and 0 file(s)" in warnings[0] and HOSPITAL_FILE not in warnings[0]


def test_a_missing_data_folder_is_said_not_guessed(tmp_path: Path) -> None:
    kit = _site_kit(tmp_path, data_root=str(tmp_path / "not_yet"))
    shutil.rmtree(tmp_path / "not_yet")
    assert permission_warnings(kit, _flare(kit)) == [
        f"the data folder ({tmp_path / 'not_yet'}) does not exist yet; check it again once the data is there"
    ]


def test_root_gets_one_warning_about_running_flare_as_root(tmp_path: Path) -> None:
    kit = _site_kit(tmp_path)
    warnings = permission_warnings(kit, Identity("root", 0, frozenset({0})))
    assert (
        len(warnings) == 1
        and "if FLARE runs as root, a job can change startup/, local/ and the data" in warnings[0]
    )


@pytest.mark.skipif(IS_ROOT, reason="as root every file is writable to the running user (os.access)")
def test_the_running_user_owning_the_kit_is_warned(tmp_path: Path) -> None:
    kit = _site_kit(tmp_path)  # owned by the running user: its own files, writable to it via chmod anyway
    (kit / "local" / C.SITE_CONFIG_FILE).chmod(0o640)
    warnings = permission_warnings(kit)
    assert any("can be renamed away and replaced" in w for w in warnings)  # its own kit folder


@pytest.mark.skipif(not IS_ROOT, reason="the running user is not root")
def test_the_check_run_as_root_says_so(tmp_path: Path) -> None:
    warnings = permission_warnings(_site_kit(tmp_path))
    assert len(warnings) == 1 and "the check runs as root" in warnings[0]


# ----------------------------------------------------------------------------------------- preflight
@pytest.mark.parametrize(("kit_file", "warned"), [("fed_client.json", True), ("fed_server.json", False)])
def test_preflight_warns_for_site_kits_without_failing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kit_file: str, warned: bool
) -> None:
    kit = _site_kit(tmp_path)
    (kit / "local" / C.SITE_CONFIG_FILE).chmod(0o660)
    if kit_file != "fed_client.json":
        (kit / "startup" / "fed_client.json").rename(kit / "startup" / kit_file)
    monkeypatch.setattr(preflight, "flare_preflight", lambda kit, timeout: (True, [], ""))
    check = check_kit(kit, user=_flare(kit))
    assert check.ok and bool(check.warnings) is warned
    text = summary([check])
    assert text.startswith("cleveland: READY") and ("  warning    local/ is writable" in text) is warned


def test_the_summary_prints_each_warning_on_its_own_line() -> None:
    check = KitCheck(kit=Path("site-1"), flare_ok=True, warnings=["a", "b"])
    assert summary([check]).splitlines()[-2:] == ["  warning    a", "  warning    b"]


@pytest.mark.parametrize("contents", ["empty", "only_root_ca"])
def test_preflight_fails_a_startup_folder_without_a_kit_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contents: str
) -> None:
    kit = tmp_path / "site-1"
    (kit / "startup").mkdir(parents=True)
    if contents == "only_root_ca":
        (kit / "startup" / "rootCA.pem").write_text("not a certificate")
    monkeypatch.setattr(preflight, "flare_preflight", lambda kit, timeout: (True, [], ""))
    check = check_kit(kit)
    assert not check.ok
    assert summary([check]).splitlines() == [
        "site-1: NOT READY",
        f"  integrity  FAIL  {kit} is not a startup kit "
        "(startup/ holds none of fed_client.json, fed_server.json, fed_admin.json)",
    ]
