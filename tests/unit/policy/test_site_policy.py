"""Site policy documents: BYOC off for every role, privacy scopes, GPU resources from capacity."""

from __future__ import annotations

import pytest

from fedhealth_tools.policy.site_policy import (
    EXCLUDE_LAYERS,
    GPU_CONSUMER,
    GPU_MANAGER,
    REMOVED_SITES,
    RIGHTS,
    add_removed_sites,
    authorization_policy,
    privacy_policy,
    size_resources,
)

BASE_AUTHZ = {
    "format_version": "1.0",
    "permissions": {
        "project_admin": "any",
        "lead": {"submit_job": "any", "byoc": "any"},
        "member": {"view": "any"},
    },
}
EXCLUDE = {"path": EXCLUDE_LAYERS, "args": {"layers": ["net.bias"]}}
NOISE = {"path": "fedhealth.filters.gaussian_noise.GaussianNoise", "args": {"sigma": 0.1}}
SCOPES = {
    "standard": {},
    "strict": {"task_data_filters": [EXCLUDE], "task_result_filters": [EXCLUDE, NOISE]},
}
BAD_PRIVACY = [
    (SCOPES, ["secret"], None, "does not define"),
    (SCOPES, ["standard"], "strict", "is not one of the site's scopes"),
    ({"s": {"task_result_filters": [EXCLUDE]}}, ["s"], None, "must be in task_data_filters too"),
    ({"s": {"task_result_filters": [{"args": {}}]}}, ["s"], None, "dotted 'path'"),
    ({"s": {"filters": []}}, ["s"], None, "unknown key"),
]
RESOURCES = {
    "format_version": 2,
    "components": [
        {"id": "resource_manager", "path": GPU_MANAGER, "args": {"num_of_gpus": 0, "mem_per_gpu_in_GiB": 0}},
        {"id": "resource_consumer", "path": GPU_CONSUMER, "args": {}},
        {"id": "process_launcher", "path": "x.Launcher", "args": {}},
    ],
}
# (capacity, gpus, memory, has consumer)
CAPACITY_CASES = [
    ({"num_of_gpus": 2, "mem_per_gpu_in_GiB": 24}, 2, 24, True),
    (None, 0, 0, False),
    ({"num_of_gpus": 0, "mem_per_gpu_in_GiB": 16}, 0, 0, False),
]


@pytest.mark.parametrize("byoc", [False, True])
def test_authorization_sets_byoc_for_every_role(byoc: bool) -> None:
    policy = authorization_policy(BASE_AUTHZ, byoc=byoc)
    expected = "any" if byoc else "none"
    assert {role: rights["byoc"] for role, rights in policy["permissions"].items()} == dict.fromkeys(
        ("project_admin", "lead", "member"), expected
    )
    admin = policy["permissions"]["project_admin"]
    assert set(admin) == set(RIGHTS) and all(admin[r] == "any" for r in RIGHTS if r != "byoc")
    assert (
        policy["permissions"]["member"]["view"] == "any"
        and "submit_job" not in policy["permissions"]["member"]
    )
    assert BASE_AUTHZ["permissions"]["project_admin"] == "any"  # the input is untouched


# (lead_shell_commands, the lead's shell_commands right afterwards)
LEAD_SHELL_CASES = [(False, "none"), (True, "o:site")]


@pytest.mark.parametrize(("keep", "expected"), LEAD_SHELL_CASES)
def test_lead_has_no_shell_commands_unless_kept(keep: bool, expected: str) -> None:
    base = {"permissions": {"lead": {"submit_job": "any", "shell_commands": "o:site"}, "org_admin": {}}}
    base["permissions"]["org_admin"]["shell_commands"] = "o:site"
    policy = authorization_policy(base, byoc=False, lead_shell_commands=keep)
    assert policy["permissions"]["lead"]["shell_commands"] == expected
    assert policy["permissions"]["lead"]["submit_job"] == "any"
    assert policy["permissions"]["org_admin"]["shell_commands"] == "o:site"  # other roles untouched
    assert base["permissions"]["lead"]["shell_commands"] == "o:site"  # the input is untouched


def test_authorization_needs_permissions() -> None:
    with pytest.raises(ValueError, match="no 'permissions'"):
        authorization_policy({"format_version": "1.0"}, byoc=False)


def test_privacy_policy_of_a_site() -> None:
    policy = privacy_policy(SCOPES, ["standard", "strict"], "strict")
    assert policy["default_scope"] == "strict"
    assert [s["name"] for s in policy["scopes"]] == ["standard", "strict"]
    strict = policy["scopes"][1]
    assert strict["task_data_filters"] == [EXCLUDE] and strict["task_result_filters"] == [EXCLUDE, NOISE]
    assert policy["scopes"][0]["task_result_filters"] == []
    assert "default_scope" not in privacy_policy(SCOPES, ["standard"], None)


@pytest.mark.parametrize(("scopes", "names", "default", "message"), BAD_PRIVACY)
def test_privacy_policy_refuses_bad_config(scopes, names, default, message) -> None:
    with pytest.raises(ValueError, match=message):
        privacy_policy(scopes, names, default)


@pytest.mark.parametrize(("capacity", "gpus", "mem", "consumer"), CAPACITY_CASES)
def test_resources_sized_from_capacity(capacity, gpus, mem, consumer) -> None:
    out = size_resources(RESOURCES, capacity)
    manager = [c for c in out["components"] if c["path"] == GPU_MANAGER]
    assert len(manager) == 1
    assert (manager[0]["args"]["num_of_gpus"], manager[0]["args"]["mem_per_gpu_in_GiB"]) == (gpus, mem)
    assert any(c["path"] == GPU_CONSUMER for c in out["components"]) is consumer
    assert out["components"][-1]["path"] == "x.Launcher"  # other components kept


@pytest.mark.parametrize("capacity", [{"num_of_gpus": -1}, {"num_of_gpus": 1, "mem_per_gpu_in_GiB": 0}])
def test_resources_refuse_bad_capacity(capacity: dict) -> None:
    with pytest.raises(ValueError, match="must have num_of_gpus >= 0"):
        size_resources(RESOURCES, capacity)


def test_removed_sites_added_once_to_the_server_resources() -> None:
    once = add_removed_sites(RESOURCES, ["b_site", "a_site"])
    twice = add_removed_sites(once, ["c_site"])
    removed = [c for c in twice["components"] if c["path"] == REMOVED_SITES]
    assert removed == [{"id": "removed_sites", "path": REMOVED_SITES, "args": {"sites": ["c_site"]}}]
    assert [c["args"] for c in once["components"] if c["path"] == REMOVED_SITES] == [
        {"sites": ["a_site", "b_site"]}
    ]
    assert len(twice["components"]) == len(RESOURCES["components"]) + 1
