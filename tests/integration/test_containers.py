"""The container images: built offline, no secrets inside, a server and a site federating from them.

Starts a Docker daemon of its own (data root, exec root and socket in a temporary folder under
/tmp; no bridge, no iptables; the host's /var/run/docker.sock is never used), then runs
``scripts/images.py`` (``make images``): the Debian base from debootstrap (cached in
``workspace/containers/``), the runtime from ``wheelhouse/`` (built by ``scripts/wheelhouse.py``
when missing) and the server, CPU site and admin images. It checks that no image holds a key,
certificate or startup kit file (the files of each image and its ``docker history``) and that each
runs as uid 10001.

Then a small production-style project (server, one hospital, the project admin; fedhealth's
loopback builder, so every address is 127.0.0.1) is provisioned, and the server and site
containers run with their kits mounted read-only on ``/user_config`` (``--network host``: the
daemon has no bridge). The admin image lists the connected site, the host's FLARE API session
runs a two-round heart job to ``FINISHED:COMPLETED``, and every socket the containers listen on is
on 127.0.0.1. Every container, the images (with the daemon's data root) and the daemon are removed
at the end.

Skipped, with the reason, without root, docker, dockerd or debootstrap (CI's machine), or when the
daemon does not start. Marked ``slow`` (4 to 5 minutes here, most of it the runtime image's
offline pip install).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from fedhealth.constants import HEART_SITES
from fedhealth_tools.data.heart_canonical import canonical_sites
from fedhealth_tools.data.heart_dialects import write_heart_dialect_site
from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import free_port, port_in_use
from fedhealth_tools.poc.variants import job_variant
from fedhealth_tools.poc.workspace import PocError, PocLayout, update_site_settings
from fedhealth_tools.provision.kits import run_provision

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "scripts" / "images.py"
WHEELHOUSE = ROOT / "scripts" / "wheelhouse.py"
BASE_TARBALL = ROOT / "workspace" / "containers" / "debian-bookworm-rootfs.tar"
SITES = HEART_SITES[:1]
ADMIN = "admin@fedhealth.org"
UID = 10001  # the images' user (docker/runtime.Dockerfile)
ROLES = ("server", "site-cpu", "admin")
# a file of a startup kit or a key: none may be in an image
SECRET_SUFFIXES = (".key", ".pem", ".crt", ".tenseal")
EMPTY_MOUNT_POINTS = {"user_config", "vault", "vault/workspace"}  # folders the image makes, empty
KIT_FILES = ("fed_server.json", "fed_client.json", "fed_admin.json", "signature.json")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run a Docker daemon of its own"
    tools = ["docker", "dockerd", "containerd", "runc"]
    if not BASE_TARBALL.is_file():
        tools.append("debootstrap")
    absent = [tool for tool in tools if shutil.which(tool) is None]
    return f"not installed: {', '.join(absent)} (Debian: docker.io debootstrap)" if absent else None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def _docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} failed: {proc.stderr.strip()[-2000:]}")
    return proc


@pytest.fixture(scope="module")
def daemon(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Path]:
    """A dockerd of this test's own; ``DOCKER_HOST`` points at it. Stopped and its data removed after."""
    folder = Path(tempfile.mkdtemp(prefix="fedhealth-dockerd-", dir="/tmp"))
    socket = folder / "docker.sock"
    log = open(folder / "dockerd.log", "wb")  # noqa: SIM115 - closed in finally
    cmd = [
        "dockerd",
        f"--data-root={folder / 'data'}",
        f"--exec-root={folder / 'exec'}",
        f"--pidfile={folder / 'docker.pid'}",
        f"--host=unix://{socket}",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    monkeypatch_module.setenv("DOCKER_HOST", f"unix://{socket}")
    try:
        deadline = time.monotonic() + 60
        while _docker("info", check=False, timeout=30).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "dockerd.log").read_text(errors="replace").strip().splitlines()[-5:]
                pytest.skip("dockerd did not start: " + " | ".join(tail))
            time.sleep(0.5)
        yield folder
    finally:
        for name in _docker("ps", "-aq", check=False).stdout.split():
            _docker("rm", "-f", name, check=False)
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for mount in _mounts_below(folder):  # dockerd leaves its default netns bind-mounted
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        assert not folder.exists(), f"{folder} could not be removed"


def _mounts_below(folder: Path) -> list[str]:
    """Mount points inside ``folder``, deepest first."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((p for p in points if p.startswith(f"{folder}/")), key=len, reverse=True)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def images(daemon: Path) -> dict[str, dict]:
    """``make images`` against the test's daemon: ``{image: {seconds, size_mb}}``."""
    if not (ROOT / "wheelhouse" / "requirements.lock").is_file():
        made = subprocess.run(
            [sys.executable, WHEELHOUSE, "--out", ROOT / "wheelhouse"], capture_output=True, text=True
        )
        assert made.returncode == 0, made.stderr[-3000:]
    report = daemon / "images.json"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, IMAGES, "--report", report], capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    built = {item["image"]: item for item in json.loads(report.read_text())}
    print(f"\nimages built in {time.monotonic() - start:.0f} s:\n{proc.stdout}")
    return built


def _image(role: str) -> str:
    return f"fedhealth/{role}:latest"


def test_images_are_built_offline_and_run_as_an_unprivileged_user(images: dict[str, dict]) -> None:
    version = _kit_version()
    expected = {"fedhealth/debian-base:bookworm", *(f"fedhealth/{r}:{version}" for r in ("runtime", *ROLES))}
    assert set(images) == expected
    assert images["fedhealth/debian-base:bookworm"]["size_mb"] < 400
    # the runtime holds torch (CPU), nvflare, monai...: well over the base, under 4 GB
    assert 1000 < images[f"fedhealth/runtime:{version}"]["size_mb"] < 4000
    probe = (
        "import fedhealth, nvflare, torch; print(torch.__version__, nvflare.__version__, fedhealth.__file__)"
    )
    for role in ROLES:
        inspect = json.loads(_docker("image", "inspect", _image(role)).stdout)[0]["Config"]
        assert inspect["User"] == "fedhealth"
        assert f"FEDHEALTH_ROLE={'site' if role == 'site-cpu' else role}" in inspect["Env"]
        ids = _docker("run", "--rm", "--network", "none", "--entrypoint", "id", _image(role)).stdout
        assert ids.startswith(f"uid={UID}(fedhealth) gid={UID}(fedhealth)")
    out = _docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", _image("site-cpu"), "-c", probe
    )
    torch_version, nvflare_version, location = out.stdout.split()
    assert (torch_version, nvflare_version) == ("2.13.0+cpu", "2.9.0")
    assert location.startswith("/opt/fedhealth/venv/")  # installed from the wheelhouse, not a checkout


def test_no_image_holds_a_key_a_certificate_or_a_startup_kit(images: dict[str, dict], tmp_path: Path) -> None:
    for role in ROLES:
        container = _docker("create", _image(role)).stdout.strip()
        archive = tmp_path / f"{role}.tar"
        try:
            _docker("export", "-o", str(archive), container, timeout=600)
        finally:
            _docker("rm", container, check=False)
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            # public CA bundles (Debian's, certifi's) end in .pem/.crt too: no file may hold a private key
            keys = [
                m.name
                for m in tar.getmembers()
                if m.isfile()
                and m.name.endswith(SECRET_SUFFIXES)
                and b"PRIVATE KEY" in tar.extractfile(m).read()
            ]
        archive.unlink()
        assert len(names) > 10_000  # the whole file system: Debian, Python, torch...
        wrong = keys + [
            n
            for n in names
            if n.endswith((".key", ".tenseal"))
            or Path(n).name in KIT_FILES
            or (n.startswith(("user_config", "vault")) and n.rstrip("/") not in EMPTY_MOUNT_POINTS)
        ]
        assert wrong == [], f"{role}: {wrong[:10]}"
        history = _docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", _image(role)).stdout
        # what was put into the image: the installed venv and the entrypoint, nothing else
        copies = [
            line.split(" in ")[-1].strip()
            for line in history.splitlines()
            if "COPY " in line or "ADD " in line
        ]
        assert sorted(copies) == ["/opt/fedhealth/venv", "/usr/local/bin/fedhealth-entrypoint"], history


def test_the_entrypoint_refuses_to_start_without_a_kit(images: dict[str, dict]) -> None:
    proc = _docker("run", "--rm", "--network", "none", _image("server"), check=False)
    assert proc.returncode == 2
    assert "no server startup kit on /user_config (startup/fed_server.json is missing)" in proc.stderr


def test_server_and_site_containers_run_a_heart_job(images: dict[str, dict], tmp_path: Path) -> None:
    start = time.monotonic()
    layout = _provision(tmp_path)
    data = tmp_path / "hospital_data"
    splits = canonical_sites()
    for site in SITES:
        write_heart_dialect_site(data / site, site, splits=splits)
        update_site_settings(layout.kit(site), data_root="/data")
    workspaces = {name: tmp_path / "run" / name for name in ("server", *SITES, "admin")}
    for folder in [*workspaces.values(), layout.prod_dir, data]:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", "-R", f"{UID}:{UID}", str(folder)], check=True)

    names = {"server": "fh-test-server", **{site: f"fh-test-{site}" for site in SITES}}
    try:
        _run_container(names["server"], "server", layout.kit("server"), workspaces["server"])
        deadline = time.monotonic() + 90
        while not port_in_use(layout.port):
            _assert_running(names["server"])
            assert time.monotonic() < deadline, _logs(names["server"])
            time.sleep(0.5)
        for site in SITES:
            mounts = ["-v", f"{data / site}:/data:ro"]
            _run_container(names[site], "site-cpu", layout.kit(site), workspaces[site], mounts)

        listed = _admin_lists_sites(layout, workspaces["admin"])
        assert all(site in listed for site in SITES), listed
        with AdminClient(layout) as admin:
            check = lambda: [_assert_running(n) for n in names.values()]  # noqa: E731
            admin.wait_for_sites(SITES, timeout=120, check=check)
            job_id = admin.submit(_job(tmp_path), tmp_path / "submit")
            listeners = set()

            def sample(_: object) -> None:
                check()
                listeners.update(_listeners(names.values()))

            status = admin.follow(job_id, on_progress=sample, check=check, timeout=300)
        assert status == "FINISHED:COMPLETED", _logs(names["server"])
        listeners.update(_listeners(names.values()))
        assert (("127.0.0.1", layout.port)) in listeners
        assert {ip for ip, _ in listeners} == {"127.0.0.1"}, listeners
        # FLARE ran in the container's writable workspace, from the read-only kit's copy
        site_log = workspaces[SITES[0]] / job_id / "log.txt"
        assert site_log.is_file() and site_log.stat().st_uid == UID
        assert (workspaces["server"] / "kit" / "startup" / "fed_server.json").is_file()
        print(f"\nfederation in containers: {time.monotonic() - start:.0f} s (job {status})")
    finally:
        for name in names.values():
            _docker("rm", "-f", name, check=False)


def _kit_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _run_container(name: str, role: str, kit: Path, workspace: Path, extra: list[str] | None = None) -> None:
    _docker(
        "run",
        "-d",
        "--name",
        name,
        "--init",
        "--network",
        "host",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "-v",
        f"{kit}:/user_config:ro",
        "-v",
        f"{workspace}:/vault/workspace",
        *(extra or []),
        _image(role),
    )


def _assert_running(name: str) -> None:
    state = _docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
    if state != "true":
        raise PocError(f"container {name} stopped:\n{_logs(name)}")


def _logs(name: str) -> str:
    proc = _docker("logs", "--tail", "40", name, check=False)
    return (proc.stdout + proc.stderr)[-4000:]


def _listeners(containers) -> set[tuple[str, int]]:
    """``(address, port)`` of every listening TCP socket of the containers' processes."""
    pids: set[int] = set()
    for name in containers:
        top = _docker("top", name, "-eo", "pid", check=False).stdout.split()[1:]
        pids.update(int(p) for p in top if p.isdigit())
    found = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            found.add((conn.laddr.ip, conn.laddr.port))
    return found


def _admin_lists_sites(layout: PocLayout, workspace: Path) -> str:
    """The admin image, with a FLARE API script instead of the console: the connected sites."""
    script = (
        "import time\n"
        "from nvflare.fuel.flare_api.flare_api import new_secure_session\n"
        f"s = new_secure_session({ADMIN!r}, '/vault/workspace/kit', timeout=60)\n"
        "try:\n"
        "    for _ in range(60):\n"
        "        names = sorted(c.name for c in s.get_connected_client_list())\n"
        f"        if set({list(SITES)!r}) <= set(names): break\n"
        "        time.sleep(1)\n"
        "    print('connected:', ' '.join(names))\n"
        "finally:\n"
        "    s.close()\n"
    )
    kit = layout.kit(ADMIN)
    proc = _docker(
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        f"{kit}:/user_config:ro",
        "-v",
        f"{workspace}:/vault/workspace",
        _image("admin"),
        "python3",
        "-c",
        script,
        timeout=180,
    )
    return proc.stdout


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
        {"path": "fedhealth_tools.provision.site_policy_builder.SitePolicyBuilder"},
        {"path": "fedhealth_tools.provision.loopback_builder.LoopbackBuilder"},
        {"path": "nvflare.lighter.impl.signature.SignatureBuilder"},
    ]
    return {"api_version": 3, "name": "containers", "participants": participants, "builders": builders}


def _provision(root: Path) -> PocLayout:
    port = free_port()
    project = root / "project.yml"
    project.write_text(yaml.safe_dump(_project(port)))
    return PocLayout(root, run_provision(project, root / "ws"), "server", ADMIN, SITES, port)


def _job(root: Path) -> Path:
    """heart_fedavg for the one site, two rounds."""
    job = job_variant(ROOT / "jobs" / "heart_fedavg", root / "jobs" / "heart_fedavg", rounds=2, min_sites=1)
    config_file = job / "app" / "config" / "config_fed_server.json"
    config = json.loads(config_file.read_text())
    for workflow in config["workflows"]:
        if workflow["id"] == "alignment":
            workflow["args"]["min_clients"] = len(SITES)
    config_file.write_text(json.dumps(config, indent=2))
    return job
