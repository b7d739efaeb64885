"""Production provisioning, proved with real processes: kits with roles, mTLS and site policies.

One small project is provisioned with FLARE's ``nvflare provision`` (server, two heart sites, a
spare site, admins of several roles, HE contexts, fedhealth's SitePolicyBuilder, signatures), the
server and the two sites start from their kits on loopback with mTLS, and then:

- the project admin's ``heart_fedavg`` completes, and each site's privacy scope shows in what
  arrived at the server (cleveland keeps ``net.bias`` at home, hungary's ``DPUpdate`` clips and
  noises it, with ε per release in the stamp);
- a ``member`` cannot submit; an ``org_admin`` cannot abort a job another org submitted;
- a job that ships ``custom/`` code is refused by sites whose policy has BYOC off;
- a site kit from another provisioning (another root CA) cannot join;
- a kit whose signed files were altered refuses to start, naming the file;
- a job asking for a GPU is never scheduled on CPU-only sites;
- a hospital added with ``add_participants`` joins the running federation, no other kit changes;
- ``fedhealth preflight`` passes a running site's kit; a removed site cannot register;
- a job naming a runtime function (a client component, or the server persistor's ``config_type:
  dict`` model, which FLARE never authorizes) is refused by the kits' ``ComponentGuard``, also at a
  site that widened its own allow-list; the function never runs.

Marked ``slow`` and ``provisioning`` (``pytest -m provisioning`` runs it alone, about 2-3 minutes).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from nvflare.fuel.flare_api.flare_api import new_secure_session

from fedhealth.constants import UPDATE_AUDIT_FILE
from fedhealth.onboarding.preflight import check_kit, check_signatures, summary
from fedhealth.policy.update_rules import release_epsilon
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import PocProcesses, free_port
from fedhealth_tools.poc.variants import job_variant
from fedhealth_tools.poc.workspace import PocLayout, write_heart_data
from fedhealth_tools.provision.add_site import add_participants
from fedhealth_tools.provision.kits import run_provision

pytestmark = [pytest.mark.slow, pytest.mark.provisioning]

ROOT = Path(__file__).resolve().parents[2]
SITES = ("cleveland", "hungary")
ADMIN = "admin@fedhealth.org"
ORG_ADMIN = "it@cleveland.org"  # org_admin of cleveland_clinic
MEMBER = "observer@hungary.org"
LEAD = "scientist@hungary.org"
CLIP, MULTIPLIER, DELTA = 0.5, 5.0, 1e-5  # noise std 2 x 5 x 0.5 = 5 on every released value
EXCLUDE = {"path": "fedhealth.filters.exclude_layers.ExcludeLayers", "args": {"layers": ["net.bias"]}}
NOISE = {
    "path": "fedhealth.filters.dp_update.DPUpdate",
    "args": {"clip_norm": CLIP, "noise_multiplier": MULTIPLIER, "delta": DELTA, "seed": 0},
}
UPDATE_AUDIT = "fedhealth.filters.update_audit.UpdateAudit"
ORGS = {"cleveland": "cleveland_clinic", "hungary": "hungarian_institute", "spare": "spare_hospital"}


def _project(name: str, port: int, *, sites: tuple[str, ...], he: bool, policy: bool) -> dict:
    admins = [
        (ADMIN, "fedhealth", "project_admin"),
        (ORG_ADMIN, "cleveland_clinic", "org_admin"),
        (MEMBER, "hungarian_institute", "member"),
        (LEAD, "hungarian_institute", "lead"),
    ]
    participants = [
        {"name": "server", "type": "server", "org": "fedhealth", "fed_learn_port": port, "admin_port": port},
        *({"name": n, "type": "admin", "org": o, "role": r} for n, o, r in admins),
        *({"name": s, "type": "client", "org": ORGS.get(s, "elsewhere")} for s in sites),
    ]
    builders = [
        {
            "path": "nvflare.lighter.impl.workspace.WorkspaceBuilder",
            "args": {"template_file": ["master_template.yml"]},
        },
        {"path": "nvflare.lighter.impl.static_file.StaticFileBuilder", "args": {"config_folder": "config"}},
        {"path": "nvflare.lighter.impl.cert.CertBuilder"},
    ]
    if he:
        builders.append({"path": "nvflare.lighter.impl.he.HEBuilder"})
    if policy:
        builders.append(
            {
                "path": "fedhealth_tools.provision.site_policy_builder.SitePolicyBuilder",
                "args": {
                    # The server accepts custom code, so that the sites' refusal is what is tested.
                    "server_byoc": True,
                    # The server records what arrives with a filter the shipped jobs do not use.
                    "extra": [UPDATE_AUDIT],
                    "removed": ["removed_site"],
                    "scopes": {
                        "keep_bias": {"task_data_filters": [EXCLUDE], "task_result_filters": [EXCLUDE]},
                        "noisy": {"task_data_filters": [NOISE], "task_result_filters": [NOISE]},
                    },
                    "default": {
                        "scopes": ["keep_bias", "noisy"],
                        "default_scope": "keep_bias",
                        "byoc": False,
                    },
                    "sites": {"hungary": {"default_scope": "noisy"}},
                },
            }
        )
    builders += [
        {"path": "fedhealth_tools.provision.loopback_builder.LoopbackBuilder"},
        {"path": "nvflare.lighter.impl.signature.SignatureBuilder"},
    ]
    return {"api_version": 3, "name": name, "participants": participants, "builders": builders}


def _provision(tmp: Path, name: str, port: int, **kwargs) -> Path:
    project = tmp / f"{name}.yml"
    project.write_text(yaml.safe_dump(_project(name, port, **kwargs)))
    return run_provision(project, tmp / name)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


class Federation:
    """The running federation and its kits."""

    def __init__(self, layout: PocLayout, procs: PocProcesses, tmp: Path) -> None:
        self.layout, self.procs, self.tmp = layout, procs, tmp

    def session(self, user: str):
        return new_secure_session(user, str(self.layout.kit(user)), timeout=30)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    tmp = tmp_path_factory.mktemp("fedhealth_prov_ws")
    port = free_port()
    prod = _provision(
        tmp, "fedhealth_prov", port, sites=(*SITES, "spare", "removed_site"), he=True, policy=True
    )
    layout = PocLayout(tmp, prod, "server", ADMIN, SITES, port)
    write_heart_data(layout)
    with PocProcesses(layout, tmp / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(SITES, timeout=90, check=procs.check_alive)
        yield Federation(layout, procs, tmp)


def _fedavg(tmp: Path, name: str) -> Path:
    """heart_fedavg for two sites, two rounds, the server recording what arrives.

    At batch 16: the kits' sites have the default limits, which decline the shipped batch 4.
    """
    job = job_variant(
        ROOT / "jobs" / "heart_fedavg",
        tmp / "jobs" / name,
        rounds=2,
        min_sites=2,
        executor_args={"batch_size": 16},
    )
    server = job / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    for wf in config["workflows"]:
        if wf["id"] == "alignment":
            wf["args"]["min_clients"] = 2
    for comp in config["components"]:
        if comp["id"] == "aggregator":
            comp["args"]["max_norm_ratio"] = 1e9  # the noisy site must not be rejected as an outlier
    filters = [{"path": UPDATE_AUDIT, "args": {}}]
    config["task_result_filters"] = [{"tasks": ["train"], "filters": filters}]
    server.write_text(json.dumps(config, indent=2))
    return job


def _wait_status(session, job_id: str, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = str(session.get_job_meta(job_id).get("status", ""))
        if status.startswith(prefix) or time.monotonic() > deadline:
            return status
        time.sleep(1.0)


def test_roles_and_privacy_scopes(federation: Federation, tmp_path: Path) -> None:
    layout = federation.layout
    with AdminClient(layout) as admin:
        job_id = admin.submit(_fedavg(tmp_path, "heart_fedavg"), tmp_path / "submit")
        assert _wait_status(admin.session, job_id, "RUNNING", 60) == "RUNNING"

        # A member may look but not submit.
        member = federation.session(MEMBER)
        try:
            with pytest.raises(Exception, match=f"user '{MEMBER}' is not authorized for 'submit_job'"):
                member.submit_job(str(_fedavg(tmp_path, "member_job").resolve()))
            assert job_id in [j["job_id"] for j in member.list_jobs()]
        finally:
            member.close()

        # An org_admin may not abort a job another organisation submitted.
        org_admin = federation.session(ORG_ADMIN)
        try:
            with pytest.raises(Exception, match=f"user '{ORG_ADMIN}' is not authorized for 'abort_job'"):
                org_admin.abort_job(job_id)
            assert job_id in [j["job_id"] for j in org_admin.list_jobs()]  # it may view
        finally:
            org_admin.close()
        assert admin.status(job_id) == "RUNNING"

        status = _wait_status(admin.session, job_id, "FINISHED", 240)
        assert status == "FINISHED:COMPLETED", admin.error_logs(job_id)
        result = admin.download(job_id, tmp_path / "downloads")

    # The refusals are about roles, not broken sessions: a lead submits and aborts its own job.
    lead = federation.session(LEAD)
    try:
        copy = tmp_path / "lead" / "heart_fedavg"
        shutil.copytree(_fedavg(tmp_path, "lead_job"), copy)
        lead_job = lead.submit_job(str(copy))
        lead.abort_job(lead_job)
        assert _wait_status(lead, lead_job, "FINISHED", 60) == "FINISHED:ABORTED"
    finally:
        lead.close()

    audit = json.loads(next(Path(result).rglob(UPDATE_AUDIT_FILE)).read_text())
    by_site = {site: [r for r in audit if r["site"] == site] for site in SITES}
    assert {site: len(rows) for site, rows in by_site.items()} == {"cleveland": 2, "hungary": 2}
    for row in by_site["cleveland"]:  # scope keep_bias: the local bias never left the site
        assert row["privacy"] == [{"filter": "ExcludeLayers", "layers": ["net.bias"]}]
        assert row["max_abs_change"]["net.bias"] == 0.0
        assert 0.0 < row["max_abs_change"]["net.weight"] < 1.0
    for i, row in enumerate(by_site["hungary"]):  # scope noisy: clipped to 0.5, then N(0, 5^2) on every value
        assert row["privacy"] == [
            {
                "filter": "DPUpdate",
                "round": i,
                "epsilon": pytest.approx(release_epsilon([MULTIPLIER] * (i + 1), delta=DELTA)),
                "delta": DELTA,
                "noise_multiplier": MULTIPLIER,
                "noise_std": 2 * MULTIPLIER * CLIP,
                "clip_norm": CLIP,
                "releases": i + 1,
            }
        ]
        assert row["max_abs_change"]["net.weight"] > 2.0
        assert row["max_abs_change"]["net.bias"] > 0.0


def test_custom_code_job_is_refused_by_sites_without_byoc(federation: Federation, tmp_path: Path) -> None:
    job = _fedavg(tmp_path, "byoc_job")
    custom = job / "app" / "custom"
    custom.mkdir()
    (custom / "site_code.py").write_text("VALUE = 1\n")
    with AdminClient(federation.layout) as admin:
        job_id = admin.submit(job, tmp_path / "submit")
        status = _wait_status(admin.session, job_id, "FINISHED", 120)
        meta = admin.session.get_job_meta(job_id)
    assert status == "FINISHED:FAILED_TO_RUN"
    assert sorted(meta["job_deploy_detail"]) == [
        "cleveland: NVFLARE_ERROR: BYOC not permitted",
        "hungary: NVFLARE_ERROR: BYOC not permitted",
        "num_ok_sites 0 < required_min_sites 2",
        "server: OK",
    ]


def test_site_from_another_root_ca_cannot_join(federation: Federation, tmp_path: Path) -> None:
    layout = federation.layout
    prod = _provision(tmp_path, "other_ca", layout.port, sites=("intruder",), he=False, policy=False)
    other = PocLayout(tmp_path, prod, "server", ADMIN, ("intruder",), layout.port)
    with PocProcesses(other, tmp_path / "logs") as procs, AdminClient(layout) as admin:
        procs.start_participant("intruder")
        log = tmp_path / "logs" / "intruder.log"
        deadline = time.monotonic() + 60
        while "CERTIFICATE_VERIFY_FAILED" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the intruder neither joined nor failed on the certificate"
            time.sleep(1.0)
        time.sleep(5.0)  # a second attempt
        connected = {c.name for c in admin.session.get_connected_client_list()}
    assert connected == set(SITES)
    text = log.read_text(errors="replace")
    assert "certificate verify failed: self-signed certificate in certificate chain" in text
    assert text.count("CERTIFICATE_VERIFY_FAILED") >= 1


def test_altered_kit_is_detected(federation: Federation, tmp_path: Path) -> None:
    kit = federation.layout.kit("spare")
    assert check_signatures(kit) == (True, [])
    config = kit / "startup" / "fed_client.json"
    config.write_text(config.read_text() + "\n")  # one byte more
    privacy = kit / "local" / "privacy.json"
    privacy.write_text(privacy.read_text().replace('"keep_bias"', '"anything_goes"', 1))
    signed, problems = check_signatures(kit)
    assert signed
    assert problems == [
        "startup/fed_client.json was altered after signing",
        "local/privacy.json was altered after signing",
    ]
    (kit / "startup" / "extra.pem").write_text("x")
    assert "startup/extra.pem is not signed (added after provisioning)" in check_signatures(kit)[1]
    with PocProcesses(federation.layout, tmp_path / "logs") as procs:
        procs.start_participant("spare")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                procs.check_alive()
            except Exception as exc:  # the site refused to start
                message = str(exc)
                break
            time.sleep(0.5)
        else:
            pytest.fail("a site with an altered kit kept running")
    log = (tmp_path / "logs" / "spare.log").read_text(errors="replace")
    assert "The following files are not secure content" in log
    assert "fed_client.json" in log and "exited with code 1" in message


def test_hospital_added_without_touching_other_kits(federation: Federation, tmp_path: Path) -> None:
    layout = federation.layout
    old_kits = {name: _digests(layout.kit(name) / "startup") for name in ("server", *SITES)}
    project = yaml.safe_load((federation.tmp / "fedhealth_prov.yml").read_text())
    project["participants"].append({"name": "va_long_beach", "type": "client", "org": "va_long_beach"})
    added_file = tmp_path / "added.yml"
    added_file.write_text(yaml.safe_dump(project))
    kit = add_participants(added_file, federation.tmp / "fedhealth_prov", ["va_long_beach"])["va_long_beach"]
    assert kit.parent.name == "prod_01"
    assert check_signatures(kit) == (True, [])
    context = "startup/client_context.tenseal"
    assert (kit / context).read_bytes() == (layout.kit("cleveland") / context).read_bytes()
    assert json.loads((kit / "local" / "privacy.json").read_text())["default_scope"] == "keep_bias"
    new = PocLayout(federation.tmp, kit.parent, "server", ADMIN, ("va_long_beach",), layout.port)
    with PocProcesses(new, tmp_path / "logs") as procs, AdminClient(layout) as admin:
        procs.start_participant("va_long_beach")
        admin.wait_for_sites((*SITES, "va_long_beach"), timeout=60, check=procs.check_alive)
    # The running federation was not re-provisioned: its kits' startup files are as they were.
    assert {name: _digests(layout.kit(name) / "startup") for name in ("server", *SITES)} == old_kits


def test_preflight_of_a_site_kit(federation: Federation) -> None:
    check = check_kit(federation.layout.kit("hungary"), timeout=120)
    print(summary([check]))
    assert check.signed and check.tampered == []
    assert check.notes == ["local/fedhealth_site.json was added by the site"]  # its data settings
    assert ("Check server available", "PASSED", "N/A") in check.flare_checks
    assert check.ok and summary([check]).startswith("hungary: READY")


def test_removed_site_cannot_register_with_its_valid_certificate(
    federation: Federation, tmp_path: Path
) -> None:
    layout = federation.layout
    with PocProcesses(layout, tmp_path / "logs") as procs, AdminClient(layout) as admin:
        procs.start_participant("removed_site")
        log = layout.kit("server") / "log.txt"
        deadline = time.monotonic() + 60
        while "refused removed_site: removed from the federation" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "the server did not refuse the removed site"
            time.sleep(1.0)
        connected = {c.name for c in admin.session.get_connected_client_list()}
    assert "removed_site" not in connected and set(SITES) <= connected
    site_log = (tmp_path / "logs" / "removed_site.log").read_text(errors="replace")
    assert "registration rejected: register_client unauthenticated" in site_log  # all the site is told


def test_gpu_job_is_not_scheduled_on_cpu_only_sites(federation: Federation, tmp_path: Path) -> None:
    job = _fedavg(tmp_path, "gpu_job")
    meta = json.loads((job / "meta.json").read_text())
    meta["resource_spec"] = {site: {"num_of_gpus": 1, "mem_per_gpu_in_GiB": 1} for site in SITES}
    (job / "meta.json").write_text(json.dumps(meta))
    with AdminClient(federation.layout) as admin:
        job_id = admin.submit(job, tmp_path / "submit")
        deadline = time.monotonic() + 45
        while not (held := admin.session.get_job_meta(job_id)).get("schedule_history"):
            assert time.monotonic() < deadline, "the scheduler never tried the GPU job"
            time.sleep(1.0)
        admin.session.abort_job(job_id)
        final = _wait_status(admin.session, job_id, "FINISHED", 60)
    assert held["status"] == "SUBMITTED"
    assert held["schedule_history"][0].endswith(
        "not enough sites have enough resources (ok sites 0 < min sites 2)"
    )
    assert final == "FINISHED:ABORTED"


WRITE_SITE = "fedhealth.data.site_data.write_site"  # a runtime function: mkdir + write, if ever called
PLANTED = {"path": WRITE_SITE, "args": {"data_root": "guard_probe", "train": [], "test": []}}


def _planted_job(tmp: Path, name: str, *, server: bool) -> Path:
    """heart_fedavg naming a runtime function: the persistor's model with ``config_type: dict`` (which
    FLARE neither builds nor authorizes; the persistor would call it at START_RUN) on the server, or a
    component of the client config."""
    job = _fedavg(tmp, name)
    path = job / "app" / "config" / ("config_fed_server.json" if server else "config_fed_client.json")
    config = json.loads(path.read_text())
    if server:
        (persistor,) = [c for c in config["components"] if c["id"] == "persistor"]
        persistor["args"]["model"] = {"config_type": "dict", **PLANTED}
    else:
        config["components"].append({"id": "planted", **PLANTED})
    path.write_text(json.dumps(config, indent=2))
    return job


def _site_log(kit: Path, job_id: str, words: str, timeout: float = 30.0) -> str:
    """The site's own error log of the job (never streamed to the server), once it holds ``words``."""
    path = kit / job_id / "error_log.txt"
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.is_file() else ""
        if words in text or time.monotonic() > deadline:
            return text
        time.sleep(1.0)


def test_component_guard_refuses_functions_the_allow_list_lets_through(
    federation: Federation, tmp_path: Path
) -> None:
    layout = federation.layout
    guard = "ComponentGuard refused the component at"
    not_a_class = f"'{WRITE_SITE}': it is a function, not a class"
    # hungary widened its own allow-list (local/resources.json replaces the provisioned file).
    local = layout.kit("hungary") / "local"
    widened = json.loads((local / "resources.json.default").read_text())
    widened["class_allow_list"].append("fedhealth.data.")
    (local / "resources.json").write_text(json.dumps(widened, indent=2))
    try:
        with AdminClient(layout) as admin:
            server_job = admin.submit(_planted_job(tmp_path, "on_server", server=True), tmp_path / "submit")
            server_status = _wait_status(admin.session, server_job, "FINISHED", 120)
            result = admin.download(server_job, tmp_path / "downloads")
            site_job = admin.submit(_planted_job(tmp_path, "on_sites", server=False), tmp_path / "submit")
            site_status = _wait_status(admin.session, site_job, "FINISHED", 120)
    finally:
        (local / "resources.json").unlink()
    # The server's job did not start; the reason is in the server's job log, in the job's result.
    assert server_status == "FINISHED:EXECUTION_EXCEPTION"
    server_log = (Path(result) / "workspace" / "error_log.txt").read_text(errors="replace")
    shipped = json.loads(
        (ROOT / "jobs" / "heart_fedavg" / "app" / "config" / "config_fed_server.json").read_text()
    )
    (persistor_path,) = [c["path"] for c in shipped["components"] if c["id"] == "persistor"]
    assert persistor_path == "fedhealth.persistors.schema_model_persistor.SchemaModelPersistor"
    persistor = f"'{persistor_path}'"
    unchecked = "args.model names a class in a 'dict' config, which the site cannot check"
    assert f"{guard} 'components.#1': {persistor}: {unchecked}" in server_log
    # The sites' apps did not start; each says why in its own log only.
    assert site_status == "FINISHED:ABNORMAL"
    hungary = _site_log(layout.kit("hungary"), site_job, guard)
    assert f"{guard} 'components.#1': {not_a_class}" in hungary
    cleveland = _site_log(layout.kit("cleveland"), site_job, "is not in allow_list")
    assert f"Component '{WRITE_SITE}' at config path 'components.#1' is not in allow_list" in cleveland
    assert sorted(federation.tmp.rglob("guard_probe*")) == []  # the function never ran anywhere
