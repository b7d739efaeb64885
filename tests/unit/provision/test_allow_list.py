"""The committed allow-list is exactly what the shipped jobs use, and every entry is a component class."""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
from pathlib import Path

import pytest
import torch
from flower_modules import needs_flower
from nvflare.apis.fl_component import FLComponent

from fedhealth_tools.provision.allow_list import JOBS_DIR, WRITE_COMMAND, collect, load, main, write

ENTRIES = load()
# Components the shipped jobs must keep using (a sanity floor: collection finds nested ones too).
MUST_HAVE = (
    "fedhealth.executors.site_executor.SiteExecutor",
    "fedhealth.persistors.tabular_model_persistor.TabularModelPersistor",
    "fedhealth.workflows.ehr_alignment_controller.EhrAlignmentController",
    "fedhealth.models.image_model.ImageModel",  # nested: the image jobs' persistor's model
    "nvflare.app_opt.pt.file_model_persistor.PTFileModelPersistor",
    "nvflare.app_common.workflows.scatter_and_gather_scaffold.ScatterAndGatherScaffold",
)


def test_committed_list_is_what_the_jobs_use() -> None:
    current = collect()
    assert current == ENTRIES, (
        f"tools/fedhealth_tools/provision/allow_list.json is stale: "
        f"added {sorted(set(current) - set(ENTRIES))}, "
        f"removed {sorted(set(ENTRIES) - set(current))}. Regenerate it: {WRITE_COMMAND}"
    )
    assert set(MUST_HAVE) <= set(ENTRIES)
    assert len(ENTRIES) == len(set(ENTRIES)) and sorted(ENTRIES) == ENTRIES


# Entries whose module needs flwr are checked with .venv-flower (tests/unit/jobs/test_flower_jobs.py).
KIT_ENTRIES = [e for e in ENTRIES if e.rsplit(".", 1)[0] not in needs_flower()]


@pytest.mark.parametrize("entry", KIT_ENTRIES)
def test_every_entry_is_a_component_class_at_its_canonical_path(entry: str) -> None:
    assert not entry.endswith(".") and not any(part.startswith("_") for part in entry.split("."))
    module, name = entry.rsplit(".", 1)
    obj = getattr(importlib.import_module(module), name)
    assert inspect.isclass(obj), entry
    assert f"{obj.__module__}.{obj.__qualname__}" == entry
    assert issubclass(obj, (FLComponent, torch.nn.Module)), entry
    if issubclass(obj, torch.nn.Module):  # models only, never an FLARE component that is a module too
        assert entry.startswith("fedhealth.models."), entry


def test_a_new_component_fails_until_the_list_is_regenerated(tmp_path: Path, capsys) -> None:
    jobs = tmp_path / "jobs"
    shutil.copytree(JOBS_DIR / "heart_fedavg", jobs / "heart_fedavg")
    new = "fedhealth.filters.update_audit.UpdateAudit"
    server = jobs / "heart_fedavg" / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    config["task_result_filters"] = [{"tasks": ["train"], "filters": [{"path": new, "args": {}}]}]
    server.write_text(json.dumps(config))
    listed = tmp_path / "allow_list.json"
    assert write(JOBS_DIR / ".." / "jobs", listed) == ENTRIES  # the repo's jobs: the committed list
    assert load(listed) == ENTRIES
    assert new in collect(jobs) and new not in ENTRIES
    assert main(["--jobs", str(jobs)]) == 1  # the committed list against these jobs
    out = capsys.readouterr().out
    assert f"added ['{new}']" in out and WRITE_COMMAND in out
