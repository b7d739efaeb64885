"""The production project provisions: every site kit carries its policies, limits, HE contexts and signatures.

One real ``nvflare provision`` run of the production ``project.yml`` (a few seconds), read back by
``fedhealth provision``'s report and checked by ``fedhealth preflight``'s signature check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.onboarding.preflight import check_signatures, site_files
from fedhealth_tools.provision.allow_list import load
from fedhealth_tools.provision.allow_list_builder import GUARD
from fedhealth_tools.provision.kits import fingerprint, read_kits, report, run_provision
from fedhealth_tools.provision.site_policy_builder import SitePolicyBuilder

REPO = Path(__file__).resolve().parents[3]
HOST = "fl.heart-consortium.test"
# site -> (offered scopes, default scope, GPUs, memory per GPU)
SITES = {
    "cleveland": (["standard", "strict"], "standard", 2, 24),
    "hungary": (["standard", "strict"], "standard", 1, 16),
    "switzerland": (["strict"], "strict", 0, 0),  # no job can pick a weaker scope there
    "va_long_beach": (["standard", "strict"], "standard", 1, 16),
}
ROLES = {
    "admin@fedhealth.example": "project_admin",
    "it@cleveland.example": "org_admin",
    "scientist@cleveland.example": "lead",
    "observer@va.example": "member",
}


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_provision(REPO / "project.yml", tmp_path_factory.mktemp("prov"), server_host=HOST)


def test_server_host_is_configurable(prod: Path) -> None:
    server = json.loads((prod / HOST / "startup" / "fed_server.json").read_text())
    assert server["servers"][0]["service"]["target"] == f"{HOST}:8002"
    client = json.loads((prod / "hungary" / "startup" / "fed_client.json").read_text())
    assert client["servers"][0]["service"]["target"] == f"{HOST}:8002"
    assert client["client"]["connection_security"] == "mtls"


@pytest.mark.parametrize("site", SITES)
def test_site_kit_policies(prod: Path, site: str) -> None:
    scopes, default_scope, gpus, mem = SITES[site]
    local = prod / site / "local"
    privacy = json.loads((local / "privacy.json").read_text())
    assert privacy["default_scope"] == default_scope
    assert [s["name"] for s in privacy["scopes"]] == scopes
    authz = json.loads((local / "authorization.json.default").read_text())["permissions"]
    assert {role: rights["byoc"] for role, rights in authz.items()} == dict.fromkeys(
        ("project_admin", "org_admin", "lead", "member"), "none"
    )
    resources = json.loads((local / "resources.json.default").read_text())
    manager = next(c for c in resources["components"] if c["id"] == "resource_manager")
    assert (manager["args"]["num_of_gpus"], manager["args"]["mem_per_gpu_in_GiB"]) == (gpus, mem)
    assert resources["class_allow_list"] == load()  # exact: no prefixes, no FLARE defaults
    assert [c["id"] for c in resources["components"] if c["path"] == GUARD] == ["component_guard"]
    assert resources["allow_log_streaming"] is False  # no site opts in in project.yml
    assert authz["lead"]["shell_commands"] == "none" and authz["org_admin"]["shell_commands"] == "o:site"
    assert (prod / site / "startup" / "client_context.tenseal").stat().st_size > 10_000
    assert check_signatures(prod / site) == (True, [])  # the limits file is signed with the rest
    strict = next(s for s in privacy["scopes"] if s["name"] == "strict")
    assert [f["path"].rsplit(".", 1)[-1] for f in strict["task_result_filters"]] == [
        "ExcludeLayers",
        "DPUpdate",
    ]
    assert strict["task_data_filters"] == strict["task_result_filters"]


@pytest.mark.parametrize("site", SITES)
def test_site_kit_limits_are_the_default_settings_file(prod: Path, site: str) -> None:
    """The builder writes local/fedhealth_site.json.default; the executor reads it under the site's own."""
    from fedhealth.policy.site_limits import site_limits

    written = json.loads((prod / site / "local" / "fedhealth_site.json.default").read_text())
    assert written == {
        "limits": {
            "min_batch_size": 16,
            "min_examples_per_round": 16,
            "max_learning_rate": 1.0,
            "allow_submit_model": True,
            "require_dp": False,
        },
        "scope_limits": {"strict": {"allow_submit_model": False}},
    }
    limits = site_limits(prod / site)
    assert limits.for_scope("strict").values.allow_submit_model is False
    assert (
        limits.for_scope("standard").sources["min_batch_size"] == "local/fedhealth_site.json.default limits"
    )


def test_server_kit_has_the_exact_list_the_guard_and_no_lead_shell(prod: Path) -> None:
    local = prod / HOST / "local"
    resources = json.loads((local / "resources.json.default").read_text())
    assert resources["class_allow_list"] == load()
    assert GUARD in [c["path"] for c in resources["components"]]
    authz = json.loads((local / "authorization.json.default").read_text())["permissions"]
    assert authz["lead"]["shell_commands"] == "none"


def test_he_contexts_land_in_startup(prod: Path) -> None:
    import tenseal as ts

    server = ts.context_from((prod / HOST / "startup" / "server_context.tenseal").read_bytes())
    client = ts.context_from((prod / "cleveland" / "startup" / "client_context.tenseal").read_bytes())
    assert client.is_private() and not server.is_private()  # only the sites hold the secret key
    vector = ts.ckks_vector(client, [1.0, 2.0])
    assert [round(v, 4) for v in vector.decrypt()] == [1.0, 2.0]


def test_report_says_what_was_made_for_whom(prod: Path) -> None:
    kits = read_kits(prod)
    assert [k.kind for k in kits] == ["server"] + ["site"] * 4 + ["admin"] * 7
    by_name = {k.name: k for k in kits}
    assert {name: by_name[name].role for name in ROLES} == ROLES
    assert by_name["switzerland"].policy["gpus"] == 0
    assert by_name["cleveland"].fingerprint == fingerprint(prod / "cleveland" / "startup" / "client.crt")
    assert len(by_name["cleveland"].fingerprint) == 32 * 3 - 1
    text = report(prod, kits)
    assert "site switzerland (university_hospitals_zurich_basel)" in text
    assert "default scope strict; scopes: strict [ExcludeLayers + DPUpdate]" in text
    assert (
        "  limits:      batch >= 16, patients/update >= 16, lr <= 1, submit_model yes, DP-SGD required no; "
        "strict: submit_model no"
    ) in text
    assert "BYOC: nobody; CPU only" in text and "BYOC: nobody; 2 GPU x 24 GiB" in text
    assert text.count("shell commands: org_admin, project_admin; job logs: kept at the site") == 4
    assert "startup/client.key, startup/client_context.tenseal (HE secret key)" in text
    assert "root CA's private key" in text and str(prod.parent / "state" / "cert.json") in text


def test_altered_local_file_is_named(prod: Path, tmp_path: Path) -> None:
    import shutil

    kit = tmp_path / "va_long_beach"
    shutil.copytree(prod / "va_long_beach", kit)
    (kit / "local" / "resources.json.default").write_text("{}")
    (kit / "local" / "extra.json").write_text("{}")
    (kit / "local" / "resources.json").write_text("{}")
    assert check_signatures(kit) == (True, ["local/resources.json.default was altered after signing"])
    assert site_files(kit) == [
        "local/extra.json was added by the site",
        "local/resources.json replaces the provisioned resources.json.default (class allow-list, GPUs) whole",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default": {"scopes": ["nope"]}}, "does not define"),
        ({"sites": {"a": {"gpus": 1}}}, "unknown key"),
        ({"limits": {"default": {"min_batch_size": 0}}}, "limits.min_batch_size must be a whole number"),
        ({"limits": {"site": {}}}, r"unknown key\(s\) \['site'\]"),
        ({"sites": {"a": {"stream_logs": "yes"}}}, "stream_logs must be true or false"),
        ({"extra": ["fedhealth."]}, "package prefix"),
        ({"extra": ["fedhealth.data.site_data.write_site"]}, "not component classes"),
    ],
)
def test_builder_refuses_bad_policy(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SitePolicyBuilder(scopes={"standard": {}}, **kwargs)


def test_add_then_renew_changes_only_the_named_kit(tmp_path: Path) -> None:
    import yaml

    from fedhealth_tools.provision.add_site import add_participants
    from fedhealth_tools.provision.errors import ProvisionError

    workspace = tmp_path / "ws"
    first = run_provision(REPO / "project.yml", workspace)
    project = yaml.safe_load((REPO / "project.yml").read_text())
    project["participants"].append({"name": "st_marys", "type": "client", "org": "st_marys"})
    added_file = tmp_path / "added.yml"
    added_file.write_text(yaml.safe_dump(project))
    kit = add_participants(added_file, workspace, ["st_marys"])["st_marys"]
    context = "startup/client_context.tenseal"
    assert (kit / context).read_bytes() == (first / "cleveland" / context).read_bytes()
    assert check_signatures(kit) == (True, [])
    with pytest.raises(ProvisionError, match=r"already provisioned \['cleveland'\]"):
        add_participants(added_file, workspace, ["cleveland"])
    old = fingerprint(first / "cleveland" / "startup" / "client.crt")
    renewed = add_participants(added_file, workspace, ["cleveland"], renew=True)["cleveland"]
    assert renewed.parent.name == "prod_02"
    assert fingerprint(renewed / "startup" / "client.crt") != old
    assert (renewed / "startup" / "rootCA.pem").read_bytes() == (
        first / "cleveland" / "startup" / "rootCA.pem"
    ).read_bytes()
    assert fingerprint(renewed.parent / "hungary" / "startup" / "client.crt") == fingerprint(
        first / "hungary" / "startup" / "client.crt"
    )
    assert (renewed / context).read_bytes() == (first / "cleveland" / context).read_bytes()
    assert check_signatures(renewed) == (True, [])
    server_context = "fl-server.fedhealth.example/startup/server_context.tenseal"
    assert (renewed.parent / server_context).read_bytes() == (first / server_context).read_bytes()
    with pytest.raises(ProvisionError, match=r"never provisioned \['nobody'\]"):
        add_participants(added_file, workspace, ["nobody"], renew=True)


def _small_project(tmp_path: Path, **policy_args: object) -> Path:
    """A copy of project.yml without HE, with the site-policy builder's args changed."""
    import yaml

    project = yaml.safe_load((REPO / "project.yml").read_text())
    project["builders"] = [b for b in project["builders"] if not b["path"].endswith("HEBuilder")]
    (policy,) = [b for b in project["builders"] if b["path"].endswith("SitePolicyBuilder")]
    policy["args"].update(policy_args)
    path = tmp_path / "project.yml"
    path.write_text(yaml.safe_dump(project))
    return path


def test_a_site_that_opts_in_streams_logs_and_a_consortium_may_give_leads_shell(tmp_path: Path) -> None:
    sites = {"switzerland": {"default_scope": "strict"}, "hungary": {"stream_logs": True}}
    project = _small_project(tmp_path, sites=sites, lead_shell_commands=True)
    prod = run_provision(project, tmp_path / "ws")
    streaming = {
        site: json.loads((prod / site / "local" / "resources.json.default").read_text())[
            "allow_log_streaming"
        ]
        for site in SITES
    }
    assert streaming == {"cleveland": False, "hungary": True, "switzerland": False, "va_long_beach": False}
    for kit in ("fl-server.fedhealth.example", *SITES):
        authz = json.loads((prod / kit / "local" / "authorization.json.default").read_text())["permissions"]
        assert authz["lead"]["shell_commands"] == "o:site"  # FLARE's default, given back on purpose
        assert authz["lead"]["byoc"] == "none"
    text = report(prod, read_kits(prod))
    assert text.count("job logs: streamed to the server") == 1
    assert "shell commands: lead, org_admin, project_admin; job logs: streamed to the server" in text


# (role, org, right, expected) evaluated by FLARE's own authorizer on cleveland's kit policy.
RIGHT_CASES = [
    ("project_admin", "fedhealth", "download_job_components", True),  # "any" keeps every FLARE right
    ("project_admin", "fedhealth", "app_command", True),
    ("project_admin", "fedhealth", "shell_commands", True),
    ("project_admin", "fedhealth", "byoc", False),
    ("lead", "cleveland_clinic", "submit_job", True),
    ("lead", "cleveland_clinic", "shell_commands", False),  # not even on its own organisation's site
    ("lead", "cleveland_clinic", "byoc", False),
    ("org_admin", "cleveland_clinic", "shell_commands", True),
    ("member", "va_long_beach", "submit_job", False),
]


@pytest.mark.parametrize(("role", "org", "right", "expected"), RIGHT_CASES)
def test_rights_as_flare_evaluates_them(prod: Path, role: str, org: str, right: str, expected: bool) -> None:
    from nvflare.fuel.sec.authz import AuthzContext, Person
    from nvflare.security.security import FLAuthorizer

    policy = json.loads((prod / "cleveland" / "local" / "authorization.json.default").read_text())
    authorizer = FLAuthorizer("cleveland_clinic", policy)
    user = Person(f"{role}@x.example", org, role)
    allowed, _ = authorizer.authorize(AuthzContext(right=right, user=user, submitter=user))
    assert allowed is expected
