"""FLARE as an unprivileged user: startup/, local/ and the data read-only to it, the workspace writable.

The layout of docs/deployment.md ("Run FLARE as an unprivileged user"), applied with the commands
the guide gives, on a production-style project (HE contexts, signed kits, fedhealth's site
policies, loopback): a server and two sites run as a fresh system user, a heart job completes, and
then, as that user, every way of changing ``startup/``, ``local/`` or the data is refused while the
kit folder (FLARE's logs and job folders) stays writable; ``fedhealth preflight``'s permission
check finds nothing to warn about in that layout, and warns once a file is made writable.

Needs root (to create the user and set owners), ``useradd``/``userdel`` and ``runuser``; skipped
with the reason otherwise. The user and every process are removed at the end. Marked ``slow``
(about a minute).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from fedhealth.constants import HEART_SITES, SITE_CONFIG_FILE
from fedhealth.onboarding.permissions import Identity, permission_warnings
from fedhealth_tools.data.heart_canonical import canonical_sites
from fedhealth_tools.data.heart_dialects import write_heart_dialect_site
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import RUNUSER, PocProcesses, free_port
from fedhealth_tools.poc.variants import job_variant
from fedhealth_tools.poc.workspace import PocLayout, update_site_settings
from fedhealth_tools.provision.kits import run_provision

ROOT = Path(__file__).resolve().parents[2]
SITES = HEART_SITES[:2]
ADMIN = "admin@fedhealth.org"
USERADD, USERDEL = shutil.which("useradd"), shutil.which("userdel")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a system user and sets owners"),
    pytest.mark.skipif(
        not (USERADD and USERDEL and Path(RUNUSER).is_file()), reason="needs useradd, userdel and runuser"
    ),
]


def _project(port: int) -> dict:
    participants = [
        {"name": "server", "type": "server", "org": "fedhealth", "fed_learn_port": port, "admin_port": port},
        {"name": ADMIN, "type": "admin", "org": "fedhealth", "role": "project_admin"},
        *({"name": site, "type": "client", "org": site} for site in SITES),
    ]
    builders = [
        {
            "path": "nvflare.lighter.impl.workspace.WorkspaceBuilder",
            "args": {"template_file": ["master_template.yml"]},
        },
        {"path": "nvflare.lighter.impl.static_file.StaticFileBuilder", "args": {"config_folder": "config"}},
        {"path": "nvflare.lighter.impl.cert.CertBuilder"},
        {"path": "nvflare.lighter.impl.he.HEBuilder"},
        {"path": "fedhealth_tools.provision.site_policy_builder.SitePolicyBuilder"},
        {"path": "fedhealth_tools.provision.loopback_builder.LoopbackBuilder"},
        {"path": "nvflare.lighter.impl.signature.SignatureBuilder"},
    ]
    return {"api_version": 3, "name": "unpriv", "participants": participants, "builders": builders}


def _sh(*command: str) -> None:
    subprocess.run(list(command), check=True, capture_output=True, text=True)


def _as_user(user: str, command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    pairs = [f"{k}={v}" for k, v in (env or {}).items()]
    return subprocess.run(
        [RUNUSER, "-u", user, "--", "env", *pairs, "sh", "-c", command], capture_output=True, text=True
    )


def _python_for(user: str, dest: Path) -> dict[str, str]:
    """Environment for a Python the user can run, over this environment's packages.

    Where the interpreter lives in a folder the user cannot enter (here: under /root, mode 700), a
    copy of the interpreter and its standard library is made and pointed at the same site-packages.
    """
    probe = "-c 'import nvflare, fedhealth'"
    pythonpath = os.environ.get("PYTHONPATH", "")
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": pythonpath}
    if _as_user(user, f"{sys.executable} {probe}", env).returncode == 0:
        return env
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base, py, venv = Path(sys.base_prefix), dest / "py", dest / "venv"
    (py / "bin").mkdir(parents=True)
    shutil.copy2(base / "bin" / version, py / "bin" / version)
    shutil.copytree(
        base / "lib",
        py / "lib",
        ignore=shutil.ignore_patterns("site-packages", "test", "__pycache__", "pkgconfig"),
        symlinks=True,
    )
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "python3", version):
        (venv / "bin" / name).symlink_to(py / "bin" / version)
    (venv / "pyvenv.cfg").write_text(f"home = {py / 'bin'}\ninclude-system-site-packages = false\n")
    (venv / "lib" / version).mkdir(parents=True)
    (venv / "lib" / version / "site-packages").symlink_to(
        Path(sys.prefix) / "lib" / version / "site-packages"
    )
    _sh("chmod", "-R", "a+rX", str(dest))
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PYTHONPATH": pythonpath,
        "LD_LIBRARY_PATH": str(py / "lib"),
    }
    check = _as_user(user, f"{venv / 'bin' / 'python3'} {probe}", env)
    if check.returncode != 0:
        pytest.skip(f"no Python the unprivileged user can run: {check.stderr.strip()[-300:]}")
    return env


def lock(kit: Path, group: str, data: Path | None = None) -> None:
    """The guide's commands: the kit folder FLARE writes in, and what it may only read."""
    _sh("chown", f"root:{group}", str(kit))
    _sh("chmod", "1770", str(kit))
    read_only = [str(kit / "startup"), str(kit / "local"), *([str(data)] if data else [])]
    _sh("chown", "-R", f"root:{group}", *read_only)
    _sh("chmod", "-R", "u=rwX,g=rX,o=", *read_only)


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder the unprivileged user can enter (pytest's own tmp_path is under a root-only folder)."""
    folder = Path(tempfile.mkdtemp(prefix="fedhealth_unpriv_"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def user() -> Iterator[str]:
    name = f"fhtest{uuid.uuid4().hex[:8]}"
    _sh(USERADD, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name)
    try:
        yield name
    finally:
        for proc in psutil.process_iter(["username"]):  # nothing of the user may outlive the test
            if proc.info["username"] == name:
                proc.kill()
        subprocess.run([USERDEL, name], capture_output=True)


def test_flare_runs_as_an_unprivileged_user_that_cannot_change_what_it_reads(base: Path, user: str) -> None:
    layout = _provision(base)
    data = base / "hospital_data"
    splits = canonical_sites()
    for site in SITES:  # the hospital's export in its own dialect and its mapping.json
        write_heart_dialect_site(data / site, site, splits=splits)
        update_site_settings(layout.kit(site), data_root=str(data / site))
    server = layout.kit("server")
    store, home, workdir = base / "server_store", base / "home", base / "run_cwd"
    resources = (server / "local" / "resources.json.default").read_text()
    resources = resources.replace("/tmp/nvflare/", f"{store}/")
    (server / "local" / "resources.json").write_text(resources)
    for folder in (store, home, workdir):
        folder.mkdir()
    for folder in (store, home):
        _sh("chown", f"{user}:{user}", str(folder))
        _sh("chmod", "700", str(folder))
    lock(server, user)
    for site in SITES:
        lock(layout.kit(site), user, data / site)
    env = _python_for(user, base / "python")
    kit, site_data = layout.kit(SITES[0]), data / SITES[0]

    who = Identity.named(user)
    assert [permission_warnings(layout.kit(site), who) for site in SITES] == [[], []]
    script = f"from fedhealth.onboarding.permissions import permission_warnings as w; print(w({str(kit)!r}))"
    as_user = _as_user(user, f'python3 -c "{script}"', env)  # the check run as FLARE's user (os.access)
    assert as_user.stdout.strip() == "[]", as_user.stderr

    with PocProcesses(layout, base / "logs", run_as=user, home=home, cwd=workdir, env=env) as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(SITES, timeout=120, check=procs.check_alive)
            job_id = admin.submit(_job(base), base / "submit")
            status = admin.follow(job_id, on_progress=lambda _: None, check=procs.check_alive, timeout=300)
        assert status == "FINISHED:COMPLETED", (base / "logs").as_posix()
        owners = {p.username() for p in _flare_processes(procs)}
        assert owners == {user}

    attempts = {
        f"touch {kit}/startup/new": False,
        f"echo x >> {kit}/startup/client.key": False,
        f"touch {kit}/local/new": False,
        f"echo '{{}}' > {kit}/local/{SITE_CONFIG_FILE}": False,
        f"mkdir {kit}/local/custom": False,  # FLARE puts local/custom on the import path
        f"mv {kit}/local {kit}/local.old": False,
        f"mv {kit}/startup {kit}/startup.old": False,
        f"touch {site_data}/new": False,
        f"echo 1 >> {site_data}/heart_disease/train.csv": False,
        f"echo '{{}}' > {site_data}/heart_disease/mapping.json": False,  # the site's mapping is data too
        f"touch {workdir}/new": False,  # the working directory is first on the import path
        f"touch {kit}/probe && rm {kit}/probe": True,  # FLARE's workspace
        f"head -c 1 {kit}/startup/client.key && head -c 1 {site_data}/heart_disease/train.csv": True,
    }
    results = {command: _as_user(user, command).returncode == 0 for command in attempts}
    assert results == attempts
    run_folder = kit / job_id
    assert run_folder.is_dir() and run_folder.owner() == user  # FLARE wrote its job folder

    (kit / "local" / SITE_CONFIG_FILE).chmod(0o660)
    warnings = permission_warnings(kit, who)
    assert len(warnings) == 1 and f"local/{SITE_CONFIG_FILE}" in warnings[0]


def _provision(root: Path) -> PocLayout:
    port = free_port()
    project = root / "project.yml"
    project.write_text(yaml.safe_dump(_project(port)))
    return PocLayout(root, run_provision(project, root / "ws"), "server", ADMIN, SITES, port)


def _job(root: Path) -> Path:
    """heart_fedavg for the two sites, two rounds."""
    job = job_variant(ROOT / "jobs" / "heart_fedavg", root / "jobs" / "heart_fedavg", rounds=2, min_sites=2)
    config_file = job / "app" / "config" / "config_fed_server.json"
    config = json.loads(config_file.read_text())
    for workflow in config["workflows"]:
        if workflow["id"] == "alignment":
            workflow["args"]["min_clients"] = len(SITES)
    config_file.write_text(json.dumps(config, indent=2))
    return job


def _flare_processes(procs: PocProcesses) -> list[psutil.Process]:
    found = []
    for name in ("server", *SITES):
        for child in psutil.Process(procs.pid(name)).children(recursive=True):
            if "nvflare" in " ".join(child.cmdline()):
                found.append(child)
    return found
