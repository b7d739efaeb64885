"""Which Python the POC participants run (PocProcesses ``python``): the kit's, or .venv-flower's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.workspace import PocError, PocLayout


def _layout(tmp_path: Path) -> PocLayout:
    return PocLayout(tmp_path, tmp_path / "prod_00", "server", "admin@x.org", ("a", "b"), 8102)


def test_default_is_this_interpreter(tmp_path: Path) -> None:
    procs = PocProcesses(_layout(tmp_path), tmp_path / "logs")
    assert procs.python == Path(sys.executable)
    assert procs._env()["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_chosen_interpreter_goes_first_on_path(tmp_path: Path) -> None:
    python = tmp_path / "flower" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    procs = PocProcesses(_layout(tmp_path), tmp_path / "logs", python=python)
    assert procs._env()["PATH"].split(os.pathsep)[0] == str(python.parent)


def test_missing_interpreter_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PocError, match=r"no Python interpreter at .*/nowhere/python"):
        PocProcesses(_layout(tmp_path), tmp_path / "logs", python=tmp_path / "nowhere" / "python")
