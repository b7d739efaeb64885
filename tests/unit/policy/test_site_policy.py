"""Site policy documents: BYOC off for every role, privacy scopes, GPU resources from capacity, the
sites' limits file."""

from __future__ import annotations

import pytest

from fedhealth_tools.policy.site_policy import (
    DP_UPDATE,
    EXCLUDE_LAYERS,
    GPU_CONSUMER,
    GPU_MANAGER,
    REMOVED_SITES,
    RIGHTS,
    add_removed_sites,
    authorization_policy,
    privacy_policy,
    site_limits_file,
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
DP = {"path": DP_UPDATE, "args": {"clip_norm": 0.2, "noise_multiplier": 3.0, "delta": 1e-5}}
SCOPES = {
    "standard": {},
    "strict": {"task_data_filters": [EXCLUDE, DP], "task_result_filters": [EXCLUDE, DP]},
}
BAD_PRIVACY = [
    (SCOPES, ["secret"], None, "does not define"),
    (SCOPES, ["standard"], "strict", "is not one of the site's scopes"),
    (
        {"s": {"task_result_filters": [EXCLUDE]}},
        ["s"],
        None,
        "ExcludeLayers must be in task_data_filters too",
    ),
    (
        {"s": {"task_result_filters": [DP], "task_data_filters": [EXCLUDE]}},
        ["s"],
        None,
        "DPUpdate must be in",
    ),
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
    assert strict["task_data_filters"] == [EXCLUDE, DP] and strict["task_result_filters"] == [EXCLUDE, DP]
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


DEFAULT_LIMITS = {
    "min_batch_size": 16,
    "min_examples_per_round": 16,
    "max_learning_rate": 1.0,
    "allow_submit_model": True,
    "require_dp": False,
}
PROJECT_LIMITS = {
    "default": {"min_batch_size": 32},
    "scopes": {"strict": {"allow_submit_model": False}},
    "sites": {
        "cleveland": {
            "max_learning_rate": 0.5,
            "dp_max_epsilon": 4.0,
            "scopes": {"strict": {"require_dp": True}},
        }
    },
}
# (project limits section, site, the site's fedhealth_site.json.default)
LIMITS_CASES = [
    (None, "hungary", {"limits": DEFAULT_LIMITS}),
    (
        PROJECT_LIMITS,
        "hungary",
        {
            "limits": {**DEFAULT_LIMITS, "min_batch_size": 32},
            "scope_limits": {"strict": {"allow_submit_model": False}},
        },
    ),
    (
        PROJECT_LIMITS,
        "cleveland",
        {
            "limits": {**DEFAULT_LIMITS, "min_batch_size": 32, "max_learning_rate": 0.5},
            "scope_limits": {"strict": {"allow_submit_model": False, "require_dp": True}},
            "dp_max_epsilon": 4.0,
        },
    ),
]
BAD_LIMITS = [
    ({"defaults": {}}, "unknown key(s) ['defaults']"),
    ({"default": {"min_batch_size": 0}}, "limits.min_batch_size must be a whole number of at least 1, got 0"),
    ({"scopes": {"strict": {"allow_submit": False}}}, "scope_limits.strict.allow_submit is not a limit"),
    ({"default": {"require_dp": True}}, "require_dp needs this site's own 'dp_max_epsilon'"),
]


@pytest.mark.parametrize(("limits", "site", "expected"), LIMITS_CASES)
def test_site_limits_file(limits: dict | None, site: str, expected: dict) -> None:
    assert site_limits_file(limits, site) == expected


@pytest.mark.parametrize(("limits", "message"), BAD_LIMITS)
def test_site_limits_file_refuses_bad_limits(limits: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        site_limits_file(limits, "hungary")
    assert str(info.value).startswith("SitePolicyBuilder limits: ") and message in str(info.value)
