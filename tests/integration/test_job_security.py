"""What a job submitter can no longer do at a hospital: issue 15's attacks, replayed in real processes.

Production-style kits from the shipped ``project.yml`` (its builders and site policies: the exact
class allow-list, the ComponentGuard, BYOC off, privacy scopes, site limits, log streaming off), a
server and three sites on 127.0.0.1 with mTLS: ``cleveland`` (standard scope), ``switzerland`` (only
the strict scope; here it also opts in to log streaming, the control that shows a streamed log
would be seen) and ``radiology`` (an imaging site). Every attack job is submitted by the ``lead``,
config only, and each must be refused at the site with a message that says why:

1. the command-execution chain (write a project file, provision it, run ``id``) at the sites and
   on the server, and the ``config_type: dict`` detour around FLARE's checks;
2. files outside the workspace: a folder deleted, the site's ``startup/`` copied out; an allowed
   class given a path outside its run folder;
3. the rewrite of the site's own ``local/fedhealth_site.json``;
4. error logs streamed to the server (only a site that opted in streams);
5. the one-patient inversion ``x = ΔW / Δb`` (batch 1, one step, learning rate 1000): declined at a
   standard and a strict site; with the floors met the recovered vector is no patient's record; and
   the control: a site that lowers its own floor gets its patient recovered exactly;
6. a label value planted in a site's label file never reaches the server or the submitter.

The attack components of 1-3 live in ``fedhealth_tools`` (provisioning, POC), which hospitals do not
install; this machine has it, so what refuses them here is the site's allow-list and guard, the
worst case. Marked ``slow`` and ``provisioning``; about three minutes on two cores.
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
from inversion import invert, nearest_row, tabular_site_rows
from nvflare.apis.dxo import from_file
from nvflare.fuel.flare_api.flare_api import new_secure_session

from fedhealth.constants import EHR_SCHEMA_FILE, RUN_RECORD_FILE, SITE_CONFIG_FILE
from fedhealth.models.tabular import TabularNet
from fedhealth_tools.imaging.synthetic import write_synthetic_site
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import PocProcesses, free_port
from fedhealth_tools.poc.variants import job_variant
from fedhealth_tools.poc.workspace import PocLayout, update_site_settings, write_heart_data
from fedhealth_tools.provision.kits import run_provision

pytestmark = [pytest.mark.slow, pytest.mark.provisioning]

ROOT = Path(__file__).resolve().parents[2]
ADMIN, LEAD = "admin@fedhealth.example", "scientist@cleveland.example"
HEART_SITES = ("cleveland", "switzerland")
SITES = (*HEART_SITES, "radiology")
LOOPBACK = {"path": "fedhealth_tools.provision.loopback_builder.LoopbackBuilder"}
PLANTED = "ZZPLANTED-Effusion-7731"  # a label value a site must never echo


def _project(port: int) -> dict:
    """The shipped project, on loopback: its server, project admin, lead and three of its sites."""
    project = yaml.safe_load((ROOT / "project.yml").read_text())
    keep = {ADMIN, LEAD, *HEART_SITES}
    parts = [p for p in project["participants"] if p["type"] == "server" or p["name"] in keep]
    for part in parts:
        part.pop("capacity", None)  # this machine has no GPU: every site is CPU-only here
        if part["type"] == "server":
            part.update(name="server", fed_learn_port=port, admin_port=port)
    parts.append({"name": "radiology", "type": "client", "org": "cleveland_clinic"})
    project["participants"] = parts
    builders = project["builders"]
    policy = next(b for b in builders if b["path"].endswith("SitePolicyBuilder"))
    policy["args"]["sites"]["switzerland"]["stream_logs"] = True  # the streaming control
    builders.insert(len(builders) - 1, LOOPBACK)  # before SignatureBuilder
    return project


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PocLayout]:
    tmp = tmp_path_factory.mktemp("fedhealth_security")
    port = free_port()
    (tmp / "project.yml").write_text(yaml.safe_dump(_project(port), sort_keys=False))
    prod = run_provision(tmp / "project.yml", tmp / "ws")
    layout = PocLayout(tmp, prod, "server", ADMIN, SITES, port)
    write_heart_data(PocLayout(tmp, prod, "server", ADMIN, HEART_SITES, port))
    _imaging_site(layout.kit("radiology"))
    with PocProcesses(layout, tmp / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(SITES, timeout=90, check=procs.check_alive)
        yield layout


def _imaging_site(kit: Path) -> None:
    """Synthetic DICOMs; the train split's label file plants an unknown finding on line 3."""
    write_synthetic_site(kit / "data", n=12)
    labels = kit / "data" / "cxr" / "train" / "labels.csv"
    names = [line.split(",")[0] for line in labels.read_text().splitlines()[1:]]
    rows = ["Effusion" if i != 1 else PLANTED for i in range(len(names))]
    labels.write_text("file,findings\n" + "".join(f"{n},{r}\n" for n, r in zip(names, rows, strict=True)))
    update_site_settings(kit, data_root="data")


def _run(layout: PocLayout, job: Path, tmp: Path, timeout: float = 180) -> tuple[str, dict, Path]:
    """Submit ``job`` as the lead; wait for it to finish; return its status, meta and downloaded result."""
    staging = tmp / "staging" / job.name
    shutil.copytree(job, staging, ignore=shutil.ignore_patterns(".__nvfl_*"))
    session = new_secure_session(LEAD, str(layout.kit(LEAD)), timeout=30)
    try:
        job_id = session.submit_job(str(staging))
        deadline = time.monotonic() + timeout
        while not str((meta := session.get_job_meta(job_id)).get("status", "")).startswith("FINISHED"):
            assert time.monotonic() < deadline, f"job {job.name} still {meta.get('status')}"
            time.sleep(1.0)
        result = Path(session.download_job_result(job_id, str(tmp / "downloads")))
    finally:
        session.close()
    return str(meta["status"]), meta, result


def _site_log(layout: PocLayout, site: str, meta: dict) -> str:
    """A site's own error log of the job (it stays at the site)."""
    path = layout.kit(site) / meta["job_id"] / "error_log.txt"
    return path.read_text(errors="replace") if path.is_file() else ""


def _job(tmp: Path, name: str, *, sites: tuple[str, ...], rounds: int = 1, **kwargs) -> Path:
    """``heart_fedavg`` deployed to ``sites`` only, ``rounds`` rounds, all of them required."""
    job = job_variant(
        ROOT / "jobs" / "heart_fedavg", tmp / name, rounds=rounds, min_sites=len(sites), **kwargs
    )
    _edit(job / "meta.json", lambda meta: meta.update(deploy_map={"app": ["server", *sites]}))
    _edit(
        job / "app" / "config" / "config_fed_server.json",
        lambda c: [
            w["args"].update(min_clients=len(sites)) for w in c["workflows"] if "min_clients" in w["args"]
        ],
    )
    return job


def _edit(path: Path, change) -> None:
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config, indent=2))


def _add_components(job: Path, side: str, components: list[dict]) -> Path:
    path = job / "app" / "config" / f"config_fed_{side}.json"
    _edit(path, lambda c: c.setdefault("components", []).extend(components))
    return job


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- 1. command execution
def _chain(marker: Path) -> list[dict]:
    """Finding 1: write a project file, provision it (its builder is ``subprocess.run``), run ``id``."""
    evil = {
        "api_version": 3,
        "name": "evil",
        "participants": [{"name": "s", "type": "server", "org": "x"}],
        "builders": [{"path": "subprocess.run", "args": {"args": ["sh", "-c", f"id > {marker}/pwned"]}}],
    }
    return [
        {
            "id": "write",
            "path": "fedhealth_tools.poc.workspace.update_site_settings",
            "args": {"kit": str(marker / "kit"), "builders": evil["builders"]},
        },
        {
            "id": "copy",
            "path": "fedhealth_tools.provision.kits.set_server_host",
            "args": {"project_file": str(marker / "evil.yml"), "dest": str(marker / "copy.yml"), "host": "h"},
        },
        {
            "id": "provision",
            "path": "fedhealth_tools.provision.kits.run_provision",
            "args": {"project_file": str(marker / "copy.yml"), "workspace": str(marker / "ws")},
        },
    ]


@pytest.mark.parametrize("side", ["client", "server"])
def test_command_execution_chain_is_refused(fed: PocLayout, tmp_path: Path, side: str) -> None:
    marker = tmp_path / "marker"
    marker.mkdir()
    (marker / "evil.yml").write_text(yaml.safe_dump({"name": "evil", "builders": []}))
    job = _add_components(_job(tmp_path, f"chain_{side}", sites=HEART_SITES), side, _chain(marker))
    status, meta, result = _run(fed, job, tmp_path)
    assert status != "FINISHED:COMPLETED"
    assert sorted(p.name for p in marker.iterdir()) == ["evil.yml"]  # nothing written, nothing ran
    expected = "Component 'fedhealth_tools.poc.workspace.update_site_settings' at config path"
    if side == "client":
        for site in HEART_SITES:
            assert expected in _site_log(fed, site, meta) and "is not in allow_list" in _site_log(
                fed, site, meta
            )
    else:
        server_log = (result / "workspace" / "log.txt").read_text(errors="replace")
        assert expected in server_log and "is not in allow_list" in server_log


def test_dict_config_detour_is_refused_by_the_guard(fed: PocLayout, tmp_path: Path) -> None:
    """An allowed persistor whose ``model`` is a ``config_type: dict`` that names a runtime function."""
    target = tmp_path / "written_by_job"
    job = _job(tmp_path, "detour", sites=HEART_SITES)
    model = {
        "path": "fedhealth.data.site_data.write_site",
        "config_type": "dict",
        "args": {"data_root": str(target)},
    }

    def detour(config: dict) -> None:
        persistor = next(c for c in config["components"] if c["id"] == "persistor")
        persistor["args"]["model"] = model

    _edit(job / "app" / "config" / "config_fed_server.json", detour)
    status, _, result = _run(fed, job, tmp_path)
    assert status != "FINISHED:COMPLETED" and not target.exists()
    log = (result / "workspace" / "log.txt").read_text(errors="replace")
    assert "ComponentGuard refused the component at 'components.#" in log
    assert "names a class in a 'dict' config, which the site cannot check" in log


# --------------------------------------------------------------------------- 2.-3. files and settings
def test_files_outside_the_workspace_stay_untouched(fed: PocLayout, tmp_path: Path) -> None:
    victim, stolen = tmp_path / "victim", tmp_path / "stolen"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    startup = str(fed.kit("cleveland") / "startup")
    components = [
        {
            "id": "delete",
            "path": "fedhealth_tools.poc.fast_settings.stock_variant",
            "args": {"src": startup, "dest": str(victim)},
        },
        {
            "id": "copy",
            "path": "fedhealth_tools.poc.fast_settings.stock_variant",
            "args": {"src": startup, "dest": str(stolen)},
        },
    ]
    status, meta, _ = _run(
        fed, _add_components(_job(tmp_path, "files", sites=("cleveland",)), "client", components), tmp_path
    )
    assert status != "FINISHED:COMPLETED"
    assert (victim / "keep.txt").read_text() == "keep" and not stolen.exists()
    assert "'fedhealth_tools.poc.fast_settings.stock_variant' at config path" in _site_log(
        fed, "cleveland", meta
    )


def test_an_allowed_class_cannot_write_outside_its_run_folder(fed: PocLayout, tmp_path: Path) -> None:
    outside = tmp_path / "tb_target"
    job = _job(tmp_path, "tb_outside", sites=HEART_SITES)

    def redirect(config: dict) -> None:
        next(c for c in config["components"] if c["id"] == "tb_receiver")["args"]["tb_folder"] = str(outside)

    _edit(job / "app" / "config" / "config_fed_server.json", redirect)
    status, _, result = _run(fed, job, tmp_path)
    assert status != "FINISHED:COMPLETED" and not outside.exists()
    log = (result / "workspace" / "log.txt").read_text(errors="replace")
    assert "ComponentGuard refused" in log and "args.tb_folder" in log and "absolute path" in log
    assert str(outside) not in log.split("ComponentGuard refused", 1)[1].splitlines()[0]  # no value echoed


def test_the_sites_own_settings_cannot_be_rewritten(fed: PocLayout, tmp_path: Path) -> None:
    settings = fed.kit("cleveland") / "local" / SITE_CONFIG_FILE
    before = _digest(settings)
    rewrite = {
        "kit": ".",
        "dp_max_epsilon": 1e6,
        "require_deidentified": False,
        "limits": {"min_batch_size": 1},
    }
    component = {
        "id": "rewrite",
        "path": "fedhealth_tools.poc.workspace.update_site_settings",
        "args": rewrite,
    }
    status, meta, _ = _run(
        fed,
        _add_components(_job(tmp_path, "settings", sites=("cleveland",)), "client", [component]),
        tmp_path,
    )
    assert status != "FINISHED:COMPLETED"
    assert _digest(settings) == before
    assert "update_site_settings' at config path" in _site_log(fed, "cleveland", meta)


# --------------------------------------------------------------------------- 4. logs
def test_only_a_site_that_opted_in_streams_its_error_log(fed: PocLayout, tmp_path: Path) -> None:
    """Both sites refuse the job and log an ERROR; only switzerland's log reaches the server."""
    component = {"id": "x", "path": "fedhealth.data.site_data.write_site", "args": {}}
    status, meta, _ = _run(
        fed, _add_components(_job(tmp_path, "logs", sites=HEART_SITES), "client", [component]), tmp_path
    )
    assert status != "FINISHED:COMPLETED"
    for site in HEART_SITES:
        assert "is not in allow_list" in _site_log(fed, site, meta)  # each site logged the refusal locally
    with AdminClient(fed) as admin:  # what the server stored (the lead may not even look)
        downloaded = admin.session.download_job_components(meta["job_id"]) or ""
    streamed = sorted(p.name for p in Path(downloaded).rglob("*")) if downloaded else []
    assert [n for n in streamed if "cleveland" in n] == []
    assert [n for n in streamed if "switzerland" in n], f"the opted-in site's log did not arrive: {streamed}"


# --------------------------------------------------------------------------- 5. one-patient inversion
def _inversion_job(tmp: Path, name: str, *, sites: tuple[str, ...], batch: int, lr: float) -> Path:
    """One SGD step a round on ``batch`` patients at learning rate ``lr``; every site's answer is kept."""
    local = {"batch_size": batch, "local_steps": 1, "optimizer": "sgd"}
    job = _job(tmp, name, sites=sites, executor_args=local)

    def attack(config: dict) -> None:
        next(x for x in config["components"] if x["id"] == "shareable_generator")["args"].update(lr=lr)
        next(w for w in config["workflows"] if w["id"] == "scatter_and_gather")["args"].update(
            ignore_result_error=True
        )

    _edit(job / "app" / "config" / "config_fed_server.json", attack)
    return job


def _failures(result: Path) -> list[dict]:
    return json.loads(next(result.rglob(RUN_RECORD_FILE)).read_text())["failures"]


def _recovered(layout: PocLayout, result: Path, site: str):
    """The inversion of ``site``'s submitted local model against the initial global model.

    The initial model is the persistor's: ``TabularNet`` with the job's ``model_args`` over the
    columns of the schema the server aligned; the site's rows are its export, read with its mapping
    and encoded under that schema, as its executor trained on them.
    """
    sent = from_file(str(next(p for p in result.rglob(site) if p.parent.name == "model_shareables"))).data
    schema = json.loads(next(result.rglob(EHR_SCHEMA_FILE)).read_text())
    server = json.loads(
        (ROOT / "jobs" / "heart_fedavg" / "app" / "config" / "config_fed_server.json").read_text()
    )
    model_args = next(c for c in server["components"] if c["id"] == "persistor")["args"]["model_args"]
    assert model_args["arch"] == "logreg"  # the inversion needs the logistic model
    net = TabularNet(in_features=len(schema["columns"]), **model_args)
    init = {k: v.numpy() for k, v in net.state_dict().items()}
    client = json.loads(
        (ROOT / "jobs" / "heart_fedavg" / "app" / "config" / "config_fed_client.json").read_text()
    )
    task_args = client["executors"][0]["executor"]["args"]["task_args"]
    return nearest_row(invert(init, sent), tabular_site_rows(layout.kit(site), task_args, schema))


def test_one_patient_inversion_is_declined_at_standard_and_strict_sites(
    fed: PocLayout, tmp_path: Path
) -> None:
    _, _, result = _run(
        fed, _inversion_job(tmp_path, "invert", sites=HEART_SITES, batch=1, lr=1000.0), tmp_path
    )
    reasons = {f["site"]: f["reason"] for f in _failures(result) if f["task"] == "train"}
    assert set(reasons) == set(HEART_SITES)
    for site, reason in reasons.items():
        assert f"site {site} failed task 'train': site policy:" in reason
        assert "batch_size 1 is below this site's min_batch_size 16" in reason
        assert "learning rate 1000 is above this site's max_learning_rate 1" in reason
    shared = sorted(p.name for p in result.rglob("model_shareables/*"))
    assert shared == ["SRV_FL_global_model.pt"]  # the server's model only: no site's local model came back


def test_with_the_floors_met_no_patient_is_recovered(fed: PocLayout, tmp_path: Path) -> None:
    status, _, result = _run(
        fed, _inversion_job(tmp_path, "floors", sites=HEART_SITES, batch=16, lr=1.0), tmp_path
    )
    assert status == "FINISHED:COMPLETED"
    match = _recovered(fed, result, "cleveland")
    assert not match.exact and match.distance > 1.0  # a mixture of 16 patients, not one of them
    reasons = [f["reason"] for f in _failures(result) if f["site"] == "switzerland"]
    assert any("submit_model" in r and "allow_submit_model" in r for r in reasons)  # strict: no local model
    assert not [p for p in result.rglob("model_shareables/switzerland")]


def test_a_site_that_lowers_its_own_floor_is_exposed(fed: PocLayout, tmp_path: Path) -> None:
    """The control: the attack is real, so the floors above are what stops it (the site decides)."""
    kit = fed.kit("cleveland")
    settings = kit / "local" / SITE_CONFIG_FILE
    saved = settings.read_text()
    update_site_settings(
        kit, limits={"min_batch_size": 1, "min_examples_per_round": 1, "max_learning_rate": 1000}
    )
    try:
        status, _, result = _run(
            fed, _inversion_job(tmp_path, "exposed", sites=("cleveland",), batch=1, lr=1000.0), tmp_path
        )
    finally:
        settings.write_text(saved)
    assert status == "FINISHED:COMPLETED"
    match = _recovered(fed, result, "cleveland")
    assert match.exact and match.second > 100 * match.distance


# --------------------------------------------------------------------------- 6. no value echoed
def test_a_planted_label_value_never_leaves_the_site(fed: PocLayout, tmp_path: Path) -> None:
    job = job_variant(ROOT / "jobs" / "cxr_fedavg", tmp_path / "labels", rounds=1, min_sites=1)
    _edit(job / "meta.json", lambda meta: meta.update(deploy_map={"app": ["server", "radiology"]}))
    findings = {"label_task": "multilabel", "classes": ["Atelectasis", "Effusion"], "positive_class": ""}
    _edit(
        job / "app" / "config" / "config_fed_client.json",
        lambda c: [e["executor"]["args"]["task_args"].update(findings) for e in c["executors"]],
    )
    _edit(job / "app" / "config" / "config_fed_server.json", _two_outputs)
    status, meta, result = _run(fed, job, tmp_path)
    assert status != "FINISHED:COMPLETED"
    reasons = [f["reason"] for f in _failures(result) if f["site"] == "radiology"]
    assert reasons and all("a finding that is not one of the job's 2 classes" in r for r in reasons)
    assert all("first at line 3" in r for r in reasons)  # where, not what
    texts = [
        json.dumps(meta),
        *(
            p.read_text(errors="replace")
            for p in result.rglob("*")
            if p.is_file() and p.suffix in {".txt", ".json", ".md", ""}
        ),
    ]
    texts.append(_site_log(fed, "radiology", meta))
    texts.append((fed.kit("radiology") / meta["job_id"] / "log.txt").read_text(errors="replace"))
    assert [t for t in texts if PLANTED in t] == []


def _two_outputs(config: dict) -> None:
    persistor = next(c for c in config["components"] if c["id"] == "persistor")
    persistor["args"]["model"]["args"]["num_classes"] = 2
