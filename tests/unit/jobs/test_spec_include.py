"""``{"$file": ...}`` in a job spec: a dictionary written once and inlined where a job uses it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth_tools.jobs.merge import SpecError
from fedhealth_tools.jobs.spec import include_files, load_family

# (case, the include object, the start of the error)
BAD: list[tuple[str, object, str]] = [
    (
        "missing file",
        {"$file": "dictionaries/none.json"},
        "spec.json.x: included file 'dictionaries/none.json' does",
    ),
    ("outside the folder", {"$file": "../secret.json"}, "spec.json.x: '../secret.json' is outside"),
    ("extra keys", {"$file": "dictionaries/d.json", "more": 1}, 'spec.json.x: an include is {"$file"'),
    (
        "not JSON",
        {"$file": "dictionaries/bad.json"},
        "spec.json.x: included file 'dictionaries/bad.json' is not",
    ),
]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    specs = tmp_path / "specs"
    (specs / "dictionaries").mkdir(parents=True)
    (specs / "dictionaries" / "d.json").write_text(json.dumps({"name": "d", "features": [{"name": "age"}]}))
    (specs / "dictionaries" / "bad.json").write_text("{not json")
    (tmp_path / "secret.json").write_text("{}")
    return specs


def test_an_include_is_replaced_by_the_files_json_anywhere(folder: Path) -> None:
    spec = {"a": [{"b": {"$file": "dictionaries/d.json"}}], "c": 1}
    assert include_files(spec, folder, where="spec.json") == {
        "a": [{"b": {"name": "d", "features": [{"name": "age"}]}}],
        "c": 1,
    }


@pytest.mark.parametrize(("case", "include", "message"), BAD, ids=[c[0] for c in BAD])
def test_a_bad_include_names_the_spec_and_the_place(
    folder: Path, case: str, include: object, message: str
) -> None:
    with pytest.raises(SpecError) as info:
        include_files({"x": include}, folder, where="spec.json")
    assert str(info.value).startswith(message)


def test_load_family_inlines_includes(folder: Path) -> None:
    spec = {
        "family": "f",
        "defaults": {"meta": {}, "client": {"dictionary": {"$file": "dictionaries/d.json"}}, "server": {}},
        "jobs": {"f_job": {}},
    }
    (folder / "f.json").write_text(json.dumps(spec))
    assert load_family(folder / "f.json")["defaults"]["client"]["dictionary"]["name"] == "d"
