"""A POC workspace is provisioned once: reused from the same project file, refused otherwise, --fresh
starts clean; ``fedhealth up --data SITE=PATH`` points a site at its own folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.constants import SITE_CONFIG_FILE, SITE_DATA_ROOT_KEY
from fedhealth_tools.cli import main
from fedhealth_tools.poc.up import parse_data_options, prepare_sites
from fedhealth_tools.poc.variants import project_on_port
from fedhealth_tools.poc.workspace import PocError, prepare_workspace, set_site_data, write_heart_data

ROOT = Path(__file__).resolve().parents[3]
PROJECT = ROOT / "provision" / "poc.yml"
# (--data options, the error's words)
BAD_DATA_OPTIONS = [
    (["cleveland"], "expected SITE=PATH"),
    (["=/tmp"], "expected SITE=PATH"),
    (["cleveland="], "expected SITE=PATH"),
    (["cleveland=/a", "cleveland=/b"], "names cleveland twice"),
]


def _settings(kit: Path) -> dict:
    return json.loads((kit / "local" / SITE_CONFIG_FILE).read_text())


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("projects")
    return project_on_port(PROJECT, base / "a.yml", 8170), project_on_port(PROJECT, base / "b.yml", 8171)


def test_reuse_refuse_and_fresh(tmp_path: Path, projects: tuple[Path, Path]) -> None:
    project, other = projects
    root = tmp_path / "poc"
    layout = prepare_workspace(project, root)
    own = tmp_path / "site_data"
    own.mkdir()
    assert set_site_data(layout, {"hungary": own}) == {"hungary": own.resolve()}
    sizes = write_heart_data(layout, skip_own_data=True)
    assert sorted(sizes) == ["cleveland", "switzerland", "va_long_beach"]  # hungary keeps its own data
    kept = root / "downloads_marker"
    kept.write_text("a job result")

    again = prepare_workspace(project, root)  # same project file: reused as it is
    assert again == layout and kept.is_file()
    assert _settings(layout.kit("hungary"))[SITE_DATA_ROOT_KEY] == str(own.resolve())
    with pytest.raises(PocError, match="sites point at their own data: hungary") as info:
        write_heart_data(again)  # the demo's heart job would not find heart rows there
    assert "--fresh" in str(info.value)

    with pytest.raises(PocError) as info:
        prepare_workspace(other, root)
    message = str(info.value)
    assert f"made from another project file ({project.resolve()})" in message
    assert "run again with --fresh" in message and kept.is_file()

    fresh = prepare_workspace(other, root, fresh=True)
    assert not kept.exists() and fresh.port == 8171
    assert not (fresh.kit("hungary") / "local" / SITE_CONFIG_FILE).exists()  # a new kit, no own settings


def test_a_folder_fedhealth_did_not_provision_is_refused(tmp_path: Path, projects: tuple[Path, Path]) -> None:
    root = tmp_path / "poc"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(PocError, match="a folder fedhealth did not provision"):
        prepare_workspace(projects[0], root)
    assert (root / "notes.txt").read_text() == "mine"


def test_up_data_names_only_project_sites_and_real_folders(
    tmp_path: Path, projects: tuple[Path, Path]
) -> None:
    with pytest.raises(PocError, match=r"--data names site-9: not sites of .*\(cleveland, hungary"):
        prepare_sites(projects[0], tmp_path / "ws", data={"site-9": tmp_path})
    assert not (tmp_path / "ws").exists()  # refused before anything was provisioned
    with pytest.raises(PocError, match=r"--data hungary=.*missing: no such folder"):
        prepare_sites(projects[0], tmp_path / "ws", data={"hungary": tmp_path / "missing"})


def test_up_command_refuses_an_unknown_site(tmp_path: Path, capsys) -> None:
    args = [
        "up",
        "--project",
        str(PROJECT),
        "--workspace",
        str(tmp_path / "ws"),
        "--data",
        f"site-9={tmp_path}",
    ]
    assert main(args) == 1
    assert "fedhealth up failed: --data names site-9: not sites of" in capsys.readouterr().err


@pytest.mark.parametrize(("options", "words"), BAD_DATA_OPTIONS)
def test_bad_data_options(options: list[str], words: str) -> None:
    with pytest.raises(PocError, match=words):
        parse_data_options(options)


def test_data_options_parse() -> None:
    assert parse_data_options(["site-1=/data/a", "site-2 = /data/b"]) == {
        "site-1": Path("/data/a"),
        "site-2": Path("/data/b"),
    }
