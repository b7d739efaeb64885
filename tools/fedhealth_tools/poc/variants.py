"""Job and project variants for drills, tests and benchmarks: same job, one setting changed.

Each function copies a job folder (or project file) and edits the copy, so the jobs under
``jobs/`` stay exactly what an admin submits.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from fedhealth_tools.poc.workspace import PocLayout

FAULT_FILTER = "fedhealth_tools.poc.fault_injector.FaultInjector"  # POC only: not in the site runtime
# The builders that write the class allow-list (SitePolicyBuilder extends AllowListBuilder).
SITE_POLICY_BUILDER = "fedhealth_tools.provision.site_policy_builder.SitePolicyBuilder"
ALLOW_LIST_BUILDERS = ("fedhealth_tools.provision.allow_list_builder.AllowListBuilder", SITE_POLICY_BUILDER)
HE_BUILDER = "nvflare.lighter.impl.he.HEBuilder"
SIGNATURE_BUILDER = "nvflare.lighter.impl.signature.SignatureBuilder"


def _write_project(project: dict, dest: Path) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(project, sort_keys=False))
    return dest


def project_on_port(project_file: Path, dest: Path, port: int) -> Path:
    """A copy of ``project_file`` whose server listens on ``port`` (FL and admin)."""
    project = yaml.safe_load(Path(project_file).read_text())
    for participant in project["participants"]:
        if participant["type"] == "server":
            participant["fed_learn_port"] = participant["admin_port"] = port
    return _write_project(project, dest)


def project_with_he(project_file: Path, dest: Path, **he_args: object) -> Path:
    """A copy of ``project_file`` whose provisioning also writes TenSEAL CKKS contexts.

    Inserts FLARE's ``HEBuilder`` (with ``he_args``, e.g. ``poly_modulus_degree``) just before
    ``SignatureBuilder``, so the contexts are signed with the rest of each kit: the server kit gets
    ``server_context.tenseal`` (public, relinearization keys only), every site kit
    ``client_context.tenseal`` (with the secret key). A project that already has it is copied as is.
    """
    project = yaml.safe_load(Path(project_file).read_text())
    builders = project["builders"]
    paths = [b["path"] for b in builders]
    if HE_BUILDER not in paths:
        if SIGNATURE_BUILDER not in paths:
            raise ValueError(
                f"{project_file}: no {SIGNATURE_BUILDER}; HE contexts must be signed with the kits."
            )
        entry: dict = {"path": HE_BUILDER}
        if he_args:
            entry["args"] = dict(he_args)
        builders.insert(paths.index(SIGNATURE_BUILDER), entry)
    return _write_project(project, dest)


def project_allowing(project_file: Path, dest: Path, classes: list[str]) -> Path:
    """A copy of ``project_file`` whose kits also allow ``classes`` (the allow-list builder's ``extra``).

    For test and drill federations that run components the shipped jobs do not use (e.g.
    :data:`FAULT_FILTER`); the shipped project files allow only what the shipped jobs use.
    """
    project = yaml.safe_load(Path(project_file).read_text())
    builders = [b for b in project["builders"] if b.get("path") in ALLOW_LIST_BUILDERS]
    if len(builders) != 1:
        raise ValueError(f"{project_file}: needs exactly one of {ALLOW_LIST_BUILDERS} to allow {classes}.")
    args = builders[0].setdefault("args", {})
    args["extra"] = [*args.get("extra", []), *(c for c in classes if c not in args.get("extra", []))]
    return _write_project(project, dest)


def project_without_gpus(project_file: Path, dest: Path) -> Path:
    """A copy of ``project_file`` with no site's ``capacity``: every site CPU-only (hosts that share
    one machine's CPUs and have no GPU, as the network lab's)."""
    project = yaml.safe_load(Path(project_file).read_text())
    for participant in project.get("participants", []):
        participant.pop("capacity", None)
    return _write_project(project, dest)


def project_with_default_scopes(project_file: Path, dest: Path) -> Path:
    """A copy of ``project_file`` whose sites all offer the site policy builder's default scopes.

    The shipped ``project.yml`` gives switzerland only ``strict``, whose layer filter names the heart
    model's ``net.bias``: a chest X-ray job fails there. Benchmarks that run every task use this copy.
    """
    project = yaml.safe_load(Path(project_file).read_text())
    for builder in project["builders"]:
        if builder.get("path") == SITE_POLICY_BUILDER:
            builder.setdefault("args", {})["sites"] = {}
    return _write_project(project, dest)


def heart_poc(
    project_file: Path, workspace: Path, *, he: bool = False, allow: list[str] | None = None
) -> PocLayout:
    """Provision ``project_file`` on a free port into ``workspace/poc`` and place each site's heart data.

    Each hospital gets its export and ``mapping.json``, what the heart jobs (task ``tabular``) read
    (:func:`~fedhealth_tools.poc.workspace.write_heart_data`).

    For drills, tests and benchmarks: a run of its own that never collides with another on the
    same machine. With ``he``, the kits also hold TenSEAL contexts (:func:`project_with_he`); with
    ``allow``, their allow-lists also name those classes (:func:`project_allowing`), e.g.
    ``[FAULT_FILTER]`` for a ``job_variant(..., faulty_site=...)``.
    """
    from fedhealth_tools.poc.processes import free_port
    from fedhealth_tools.poc.workspace import prepare_workspace, write_heart_data

    workspace = Path(workspace)
    project = project_on_port(project_file, workspace / "project.yml", free_port())
    if he:
        project = project_with_he(project, project)
    if allow:
        project = project_allowing(project, project, list(allow))
    layout = prepare_workspace(project, workspace / "poc", fresh=True)  # a run of its own: always clean
    write_heart_data(layout)
    return layout


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def job_variant(
    src: Path,
    dest: Path,
    *,
    rounds: int | None = None,
    min_sites: int | None = None,
    wait_after_min_s: float | None = None,
    train_timeout_s: int | None = None,
    cse_timeout_s: int | None = None,
    dead_client_grace_s: float | None = None,
    faulty_site: str | None = None,
    fault: dict | None = None,
    executor_args: dict | None = None,
) -> Path:
    """Copy the job ``src`` to ``dest`` and change the named settings.

    Args:
        rounds: ScatterAndGather's ``num_rounds`` (a Flower job: also its ``run_config``
            ``num-server-rounds``).
        min_sites: sites needed per round (ScatterAndGather ``min_clients`` and the job's ``min_clients``).
        wait_after_min_s: how long a round waits for the others once ``min_sites`` answered.
        train_timeout_s: the per-round deadline of the train task.
        cse_timeout_s: cross-site (or global-model) evaluation's submit/validate timeouts (a dead site
            must not stall it).
        dead_client_grace_s: how long the server waits, once a site is reported dead, before it
            checks the job's ``min_clients`` (FLARE's ``dead_client_grace_period``, default 60 s).
        faulty_site: the site that runs a second app with the fault-drill filter (its kit must
            allow :data:`FAULT_FILTER`: ``heart_poc(..., allow=[FAULT_FILTER])``).
        fault: the filter's args, e.g. ``{"mode": "nan"}``, ``{"mode": "scale", "factor": 100}``.
        executor_args: settings merged into every site executor's args, e.g. ``{"batch_size": 16}``
            (the task's options sit in ``task_args``, the client algorithms in ``algorithms``).
    """
    dest = Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".__nvfl_*"))
    server = dest / "app" / "config" / "config_fed_server.json"

    def server_change(config: dict) -> None:
        if dead_client_grace_s is not None:
            config["dead_client_grace_period"] = dead_client_grace_s
        for workflow in config["workflows"]:
            args = workflow["args"]
            if "num_rounds" in args:
                if rounds is not None:
                    args["num_rounds"] = rounds
                    if "num-server-rounds" in args.get("run_config", {}):  # a Flower app's own rounds
                        args["run_config"]["num-server-rounds"] = rounds
                if min_sites is not None:
                    args["min_clients"] = min_sites
                if wait_after_min_s is not None:
                    args["wait_time_after_min_received"] = wait_after_min_s
                if train_timeout_s is not None:
                    args["train_timeout"] = train_timeout_s
            if "submit_model_task_name" in args and cse_timeout_s is not None:
                args.update(submit_model_timeout=cse_timeout_s, validation_timeout=cse_timeout_s)
            elif "validation_task_name" in args and cse_timeout_s is not None:  # the global model's eval
                args["validation_timeout"] = cse_timeout_s

    _edit_json(server, server_change)
    if min_sites is not None:
        _edit_json(dest / "meta.json", lambda meta: meta.update(min_clients=min_sites))
    if executor_args:
        for client in dest.glob("app*/config/config_fed_client.json"):
            _edit_json(
                client, lambda c: [e["executor"]["args"].update(executor_args) for e in c["executors"]]
            )
    if faulty_site:
        _add_faulty_app(dest, faulty_site, fault or {"mode": "nan"})
    return dest


def _add_faulty_app(job: Path, site: str, fault: dict) -> None:
    """Give ``site`` its own copy of the app, with the fault-drill filter on its train results."""
    from fedhealth.constants import HEART_SITES

    shutil.copytree(job / "app", job / "app_fault")

    def deploy(meta: dict) -> None:
        everyone = meta["deploy_map"].pop("app")
        sites = list(HEART_SITES) if everyone == ["@ALL"] else [s for s in everyone if s != "server"]
        meta["deploy_map"]["app"] = ["server", *[s for s in sites if s != site]]
        meta["deploy_map"]["app_fault"] = [site]

    _edit_json(job / "meta.json", deploy)
    filters = [{"tasks": ["train"], "filters": [{"path": FAULT_FILTER, "args": dict(fault)}]}]
    _edit_json(
        job / "app_fault" / "config" / "config_fed_client.json",
        lambda c: c.update(task_result_filters=filters),
    )
