"""GPU jobs at GPU-less sites: FLARE's manager refuses them, the kit's fallback manager runs them on CPU."""

from __future__ import annotations

import json

import pytest
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.resource_managers.gpu_resource_manager import GPUResourceManager
from nvflare.utils.job_launcher_utils import get_resource_manager_spec

from fedhealth.resources.gpu_fallback import GpuOrCpuResourceManager
from fedhealth_tools.jobs.spec import REPO
from fedhealth_tools.provision.gpu_fallback_builder import (
    FALLBACK_MANAGER,
    FLARE_MANAGER,
    with_gpu_fallback,
)

META = json.loads((REPO / "jobs" / "cxr_densenet" / "meta.json").read_text())


def test_the_job_asks_every_site_for_one_gpu() -> None:
    for site in ("cleveland", "hungary"):
        assert get_resource_manager_spec(META, site) == {"num_of_gpus": 1}


def test_flare_manager_refuses_the_gpu_job_at_a_site_without_gpus() -> None:
    manager = GPUResourceManager(num_of_gpus=0, mem_per_gpu_in_GiB=0)  # the POC kit's, no capacity
    ok, token = manager.check_resources(get_resource_manager_spec(META, "cleveland"), FLContext())
    assert ok is False and token == ""


def test_fallback_manager_accepts_it_with_an_empty_reservation() -> None:
    manager = GpuOrCpuResourceManager(num_of_gpus=0, mem_per_gpu_in_GiB=0)
    assert manager.cpu_only
    ctx = FLContext()
    ok, token = manager.check_resources(get_resource_manager_spec(META, "cleveland"), ctx)
    assert ok is True and token
    assert manager.allocate_resources({"num_of_gpus": 1}, token, ctx) == {}
    assert manager.check_resources({}, ctx)[0] is True  # a job that asks nothing still runs


def test_fallback_manager_with_gpus_reserves_them_as_flare_does() -> None:
    # ignore_host: a manager sized for two GPUs without asking this GPU-less host
    manager = GpuOrCpuResourceManager(num_of_gpus=2, mem_per_gpu_in_GiB=8, ignore_host=True)
    ctx = FLContext()
    assert not manager.cpu_only
    first = manager.check_resources({"num_of_gpus": 1, "mem_per_gpu_in_GiB": 8}, ctx)
    assert first[0] is True
    assert manager.allocate_resources({"num_of_gpus": 1, "mem_per_gpu_in_GiB": 8}, first[1], ctx) == {0: 8}
    assert manager.check_resources({"num_of_gpus": 2, "mem_per_gpu_in_GiB": 8}, ctx)[0] is False  # one busy


def test_builder_swaps_only_flares_gpu_manager_and_keeps_its_args() -> None:
    kit = {
        "format_version": 2,
        "components": [
            {
                "id": "resource_manager",
                "path": FLARE_MANAGER,
                "args": {"num_of_gpus": 0, "mem_per_gpu_in_GiB": 0},
            },
            {"id": "resource_consumer", "path": "x.Consumer", "args": {}},
        ],
    }
    out = with_gpu_fallback(kit)
    assert out["components"][0] == {**kit["components"][0], "path": FALLBACK_MANAGER}
    assert out["components"][1] == kit["components"][1] and kit["components"][0]["path"] == FLARE_MANAGER
    assert with_gpu_fallback(out) == out  # idempotent
    own = {"components": [{"id": "resource_manager", "path": "site.OwnManager", "args": {}}]}
    with pytest.raises(ValueError, match=r"found \['site.OwnManager'\]"):
        with_gpu_fallback(own)
