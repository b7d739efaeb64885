"""The committed job folders are what job_specs generates; the spec merge rules, case by case."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from fedhealth_tools.jobs.__main__ import main
from fedhealth_tools.jobs.merge import SpecError, merge
from fedhealth_tools.jobs.spec import JOBS_DIR, SPECS_DIR, check, render_all, write

BASE = {
    "format_version": 2,
    "components": [
        {
            "id": "persistor",
            "path": "a.Persistor",
            "args": {"model": {"path": "m.Net", "args": {"arch": "logreg"}}},
        },
        {"id": "aggregator", "path": "a.Robust", "args": {"rule": "mean", "max_norm_ratio": 10.0}},
        {"id": "recorder", "path": "a.Recorder", "args": {}},
    ],
    "executors": [
        {"tasks": ["train"], "executor": {"id": "executor", "path": "e.Site", "args": {"mu": 0.0}}}
    ],
}
ALGORITHMS = [{"name": "fedprox", "args": {"mu": 0.3}}]

# (case, patch, the component ids after it, a check on the result)
CASES: list[tuple[str, dict[str, Any], list[str], Any]] = [
    (
        "patch args of an id",
        {"components": {"aggregator": {"args": {"rule": "median"}}}},
        ["persistor", "aggregator", "recorder"],
        lambda out: out["components"][1]["args"] == {"rule": "median", "max_norm_ratio": 10.0},
    ),
    (
        "nested args of an id",
        {"components": {"persistor": {"args": {"model": {"args": {"arch": "mlp"}}}}}},
        ["persistor", "aggregator", "recorder"],
        lambda out: out["components"][0]["args"]["model"] == {"path": "m.Net", "args": {"arch": "mlp"}},
    ),
    (
        "replace an id in place",
        {"components": {"aggregator": {"$replace": True, "path": "a.DP", "args": {"clip_norm": 0.25}}}},
        ["persistor", "aggregator", "recorder"],
        lambda out: out["components"][1] == {"id": "aggregator", "path": "a.DP", "args": {"clip_norm": 0.25}},
    ),
    (
        "remove an id",
        {"components": {"aggregator": {"$remove": True}}},
        ["persistor", "recorder"],
        lambda out: True,
    ),
    (
        "add at the end",
        {"components": {"check": {"$add": True, "path": "a.Check", "args": {"file": "c"}}}},
        ["persistor", "aggregator", "recorder", "check"],
        lambda out: out["components"][3] == {"id": "check", "path": "a.Check", "args": {"file": "c"}},
    ),
    (
        "add after an id",
        {"components": {"filter": {"$add": True, "$after": "persistor", "path": "a.F", "args": {}}}},
        ["persistor", "filter", "aggregator", "recorder"],
        lambda out: True,
    ),
    (
        "add before an id",
        {"components": {"filter": {"$add": True, "$before": "persistor", "path": "a.F", "args": {}}}},
        ["filter", "persistor", "aggregator", "recorder"],
        lambda out: True,
    ),
    (
        "delete keys of args",
        {"components": {"aggregator": {"args": {"$delete": ["max_norm_ratio"]}}}},
        ["persistor", "aggregator", "recorder"],
        lambda out: out["components"][1]["args"] == {"rule": "mean"},
    ),
    (
        "a nested list is replaced wholesale",
        {"executors": {"executor": {"executor": {"args": {"algorithms": ALGORITHMS}}}}},
        ["persistor", "aggregator", "recorder"],
        lambda out: (
            out["executors"][0]["executor"]["args"] == {"mu": 0.0, "algorithms": ALGORITHMS}
            and out["executors"][0]["tasks"] == ["train"]
        ),
    ),
]

# (case, patch, words the error message must hold)
ERRORS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "unknown id",
        {"components": {"agregator": {"args": {"rule": "median"}}}},
        [
            "components[agregator]",
            "no item with id 'agregator'",
            "['persistor', 'aggregator', 'recorder']",
            "$add",
        ],
    ),
    ("remove an unknown id", {"components": {"nope": {"$remove": True}}}, ["cannot $remove 'nope'"]),
    ("add an existing id", {"components": {"aggregator": {"$add": True, "path": "x"}}}, ["already has it"]),
    ("add after an unknown id", {"components": {"f": {"$add": True, "$after": "nope"}}}, ["$after 'nope'"]),
    (
        "delete a missing key",
        {"components": {"aggregator": {"args": {"$delete": ["gamma"]}}}},
        ["cannot $delete 'gamma'", "['rule', 'max_norm_ratio']"],
    ),
    ("unknown directive", {"components": {"aggregator": {"args": {"$merge": True}}}}, ["'$merge'"]),
]


@pytest.mark.parametrize(("case", "patch", "ids", "holds"), CASES, ids=[c[0] for c in CASES])
def test_merge(case: str, patch: dict[str, Any], ids: list[str], holds: Any) -> None:
    before = json.dumps(BASE)
    out = merge(BASE, patch)
    assert [c["id"] for c in out["components"]] == ids
    assert holds(out)
    assert json.dumps(BASE) == before  # the defaults are not modified


@pytest.mark.parametrize(("case", "patch", "words"), ERRORS, ids=[c[0] for c in ERRORS])
def test_merge_errors_say_where(case: str, patch: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(SpecError) as e:
        merge(BASE, patch, where="heart.json: heart_x.server")
    assert str(e.value).startswith("heart.json: heart_x.server")
    for word in words:
        assert word in str(e.value)


def test_committed_jobs_are_what_the_specs_generate() -> None:
    problems = check(SPECS_DIR, JOBS_DIR)
    assert problems == [], "\n".join(problems) + "\nRun `make jobs` to regenerate jobs/ from job_specs/."


def test_every_job_folder_has_a_spec_and_the_specs_cover_the_families() -> None:
    jobs = render_all(SPECS_DIR)
    on_disk = sorted(p.name for p in JOBS_DIR.iterdir() if (p / "meta.json").is_file())
    assert sorted(jobs) == on_disk
    assert len(jobs) == 30  # 15 heart, 10 chest X-ray, 1 indo_rct (config only), 3 XGBoost, 1 Flower
    assert all(files["meta.json"]["name"] == name for name, files in jobs.items())


def _specs_and_jobs(tmp_path: Path) -> tuple[Path, Path]:
    specs, jobs = tmp_path / "specs", tmp_path / "jobs"
    shutil.copytree(SPECS_DIR, specs)
    jobs.mkdir()
    for name in json.loads((SPECS_DIR / "cxr.json").read_text())["jobs"]:
        shutil.copytree(JOBS_DIR / name, jobs / name)
    for other in specs.glob("*.json"):  # only the cxr family: heart's and indo_rct's jobs are not copied
        if other.name != "cxr.json":
            other.unlink()
    return specs, jobs


def test_check_names_a_missing_job_a_changed_value_and_an_unspecified_job(tmp_path: Path) -> None:
    specs, jobs = _specs_and_jobs(tmp_path)
    assert check(specs, jobs) == []
    shutil.rmtree(jobs / "cxr_fedprox")
    client = jobs / "cxr_fedavg" / "app" / "config" / "config_fed_client.json"
    client.write_text(client.read_text().replace('"batch_size": 64', '"batch_size": 32'))
    shutil.copytree(JOBS_DIR / "heart_fedavg", jobs / "heart_fedavg")
    assert check(specs, jobs) == [
        "jobs/cxr_fedavg/app/config/config_fed_client.json differs from the spec at "
        "$.executors[0].executor.args.batch_size (32 vs 64).",
        f"jobs/cxr_fedprox is in the spec but missing from {jobs}.",
        "jobs/heart_fedavg is in no spec under specs/.",
    ]
    assert main(["--check", "--specs", str(specs), "--jobs", str(jobs)]) == 1


def test_write_regenerates_and_leaves_readmes_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    specs, jobs = _specs_and_jobs(tmp_path)
    readme = (jobs / "cxr_fedprox" / "README.md").read_text()
    shutil.rmtree(jobs / "cxr_fedprox" / "app")
    (jobs / "cxr_fedavg" / "meta.json").write_text("{}")
    assert sorted(str(p.relative_to(jobs)) for p in write(specs, jobs)) == [
        "cxr_fedavg/meta.json",
        "cxr_fedprox/app/config/config_fed_client.json",
        "cxr_fedprox/app/config/config_fed_server.json",
    ]
    assert (jobs / "cxr_fedprox" / "README.md").read_text() == readme
    assert main(["--check", "--specs", str(specs), "--jobs", str(jobs)]) == 0
    assert "match their specs" in capsys.readouterr().out


def test_a_bad_spec_is_reported_with_its_file_and_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    specs, jobs = _specs_and_jobs(tmp_path)
    spec = json.loads((specs / "cxr.json").read_text())
    spec["jobs"]["cxr_fedprox"]["server"] = {"components": {"agregator": {"args": {}}}}
    (specs / "cxr.json").write_text(json.dumps(spec))
    assert main(["--check", "--specs", str(specs), "--jobs", str(jobs)]) == 2
    err = capsys.readouterr().err
    assert "cxr.json: cxr_fedprox.server.components[agregator]: no item with id 'agregator'" in err


def test_extends_applies_the_parent_first_and_a_loop_is_an_error(tmp_path: Path) -> None:
    fedyogi = render_all(SPECS_DIR)["heart_fedyogi"]["app/config/config_fed_server.json"]
    generator = next(c for c in fedyogi["components"] if c["id"] == "shareable_generator")
    assert generator["path"].endswith("FedOptShareableGenerator")
    assert generator["args"]["server_opt"] == "yogi"
    assert generator["args"]["server_lr"] == 0.03  # heart_fedadam's, inherited
    specs, _ = _specs_and_jobs(tmp_path)
    spec = json.loads((specs / "cxr.json").read_text())
    spec["jobs"]["cxr_fedavg"]["$extends"] = "cxr_fedprox"
    spec["jobs"]["cxr_fedprox"]["$extends"] = "cxr_fedavg"
    (specs / "cxr.json").write_text(json.dumps(spec))
    with pytest.raises(SpecError, match="in a loop: cxr_fedavg -> cxr_fedprox -> cxr_fedavg"):
        render_all(specs)


def test_the_specs_readme_lists_every_spec_and_its_jobs_in_order() -> None:
    """job_specs/README.md's table is typed by hand: it must name each spec's jobs, no more, no less."""
    readme = (SPECS_DIR / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+\.json)` \| (.+) \|$", readme, flags=re.M))
    specs = sorted(p.name for p in SPECS_DIR.glob("*.json"))
    assert sorted(rows) == specs
    for name in specs:
        jobs = list(json.loads((SPECS_DIR / name).read_text())["jobs"])
        assert re.findall(r"`(\w+)`", rows[name]) == jobs, name
