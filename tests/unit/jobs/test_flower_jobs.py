"""The Flower jobs (``heart_flower``): their components checked in ``.venv-flower``, where they import.

The kit's environment has no ``flwr``, so what the other job tests do in-process (import each
component, check it is a FLARE component at its canonical path and on the provisioned allow-list,
pass the site's component check, build it from the job's args) runs here in a ``.venv-flower``
subprocess; skipped, with the reason, when that environment is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flower_modules import FLOWER_JOBS, FLOWER_PYTHON, needs_flower, run_in_flower

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(
    not FLOWER_PYTHON.is_file(), reason=".venv-flower is missing (make .venv-flower/.installed)"
)

CHECK = """
import importlib, inspect, json, sys
from pathlib import Path
from nvflare.apis.fl_component import FLComponent
from fedhealth.policy.component_check import check_job, components_in, job_configs
from fedhealth_tools.provision.allow_list import load

job, entries = Path(sys.argv[1]), json.loads(sys.argv[2])
out = {"check_job": check_job(job), "built": {}, "entries": {}}
allowed = set(load())
for file in job_configs(job):
    for where, spec in components_in(json.loads(file.read_text())):
        module, name = spec["path"].rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        obj = cls(**spec.get("args", {}))
        out["built"][spec["path"]] = {
            "fl_component": isinstance(obj, FLComponent),
            "allowed": spec["path"] in allowed,
            "runtime_installs": getattr(obj, "allow_runtime_dependency_installation", None),
        }
for entry in entries:
    module, name = entry.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    out["entries"][entry] = inspect.isclass(cls) and issubclass(cls, FLComponent) and (
        f"{cls.__module__}.{cls.__qualname__}" == entry
    )
print(json.dumps(out))
"""


def _run(job: str, entries: list[str]) -> dict:
    return run_in_flower(CHECK, ROOT / "jobs" / job, json.dumps(entries))


def test_flower_jobs_are_found() -> None:
    assert FLOWER_JOBS == ["heart_flower"]


@pytest.mark.parametrize("job", FLOWER_JOBS)
def test_flower_job_components_build_pass_the_site_check_and_never_install(job: str) -> None:
    entries = [
        e
        for e in json.loads((ROOT / "tools/fedhealth_tools/provision/allow_list.json").read_text())[
            "class_allow_list"
        ]
        if e.rsplit(".", 1)[0] in needs_flower()
    ]
    assert entries == ["fedhealth.executors.flower_site_executor.FlowerSiteExecutor"]  # imports flwr itself
    out = _run(job, entries)
    assert out["check_job"] == []
    assert out["entries"] == dict.fromkeys(entries, True)
    assert sorted(out["built"]) == [
        "fedhealth.executors.flower_site_executor.FlowerSiteExecutor",
        "fedhealth.workflows.flower_server_controller.FlowerServerController",
    ]
    for path, built in out["built"].items():
        assert built == {"fl_component": True, "allowed": True, "runtime_installs": False}, path


@pytest.mark.parametrize("job", FLOWER_JOBS)
def test_flower_job_points_at_the_server_installed_app(job: str) -> None:
    server = json.loads((ROOT / "jobs" / job / "app" / "config" / "config_fed_server.json").read_text())
    (flower,) = server["workflows"]
    args = flower["args"]
    assert args["flower_app_path"] == "local/custom/heart_flower"
    assert (ROOT / "custom" / "fedhealth" / "flower" / "apps" / "heart_flower" / "pyproject.toml").is_file()
    assert args["run_config"]["num-server-rounds"] == args["num_rounds"]
    assert not (ROOT / "jobs" / job / "app" / "custom").exists()  # no code in the job: not BYOC
