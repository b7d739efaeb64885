"""``make images``: the fedhealth container images, built offline from the wheelhouse.

No image registry is needed. The base image is a Debian bookworm root file system made here with
``debootstrap`` (from a Debian mirror, the one package source used) and ``docker import``; its
tarball is cached in ``workspace/containers/`` (git-ignored) so later builds skip debootstrap.
Then, with ``docker build --network none`` (a build cannot reach any index):

- ``fedhealth/runtime``: the base plus a venv installed from ``wheelhouse/`` with ``--no-index
  --require-hashes`` (``docker/runtime.Dockerfile``), an unprivileged user (uid 10001);
- ``fedhealth/server``, ``fedhealth/site-cpu``, ``fedhealth/admin``: the runtime with their role;
- with ``--gpu``: ``fedhealth/runtime-gpu`` from ``wheelhouse-gpu/`` (the CUDA torch wheel) and
  ``fedhealth/site-gpu``; ``--gpu-base`` can name e.g. an nvidia/cuda image with Python 3.11.

Every image is tagged ``:<kit version>`` and ``:latest``. Startup kits are never part of an image:
they are mounted at run time (docs/deployment.md, "Containers"). Prints each build's seconds and
image size and writes them as JSON (``--report``). Needs ``docker`` talking to a daemon
(``DOCKER_HOST``), and ``debootstrap`` (root) the first time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = ROOT / "docker"
CACHE = ROOT / "workspace" / "containers"
BASE_IMAGE = "fedhealth/debian-base:bookworm"
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
BASE_PACKAGES = "python3,python3-venv"
# role -> (Dockerfile, runtime image it starts from)
ROLES = {
    "server": ("server.Dockerfile", "runtime"),
    "site-cpu": ("site-cpu.Dockerfile", "runtime"),
    "admin": ("admin.Dockerfile", "runtime"),
    "site-gpu": ("site-gpu.Dockerfile", "runtime-gpu"),
}
CPU_ROLES = ("server", "site-cpu", "admin")


class ImageError(RuntimeError):
    """A build step failed; the message names the step and the tail of its output."""


@dataclass
class Built:
    """One image: its tag, how long it took to make and its size."""

    image: str
    seconds: float
    size_mb: float


def kit_version(project: Path = ROOT) -> str:
    """The ``fedhealth`` version in ``pyproject.toml`` (the images' tag)."""
    return tomllib.loads((project / "pyproject.toml").read_text())["project"]["version"]


def _run(cmd: list[str], step: str, *, timeout: float = 1800, **kwargs) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if proc.returncode != 0:
        tail = "\n  ".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ImageError(f"{step} failed (exit {proc.returncode}):\n  {tail}")
    return proc.stdout


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def image_size_mb(tag: str) -> float:
    out = _run(["docker", "image", "inspect", "--format", "{{.Size}}", tag], f"inspect {tag}")
    return int(out.strip()) / 1e6


def base_tarball(cache: Path = CACHE) -> Path:
    """The Debian root file system as a tarball, made with debootstrap once and cached."""
    tarball = cache / f"debian-{SUITE}-rootfs.tar"
    if tarball.is_file():
        return tarball
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install debootstrap), and no cached rootfs")
    cache.mkdir(parents=True, exist_ok=True)
    rootfs = cache / "rootfs"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        cmd = ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(rootfs), MIRROR]
        _run(cmd, "debootstrap")
    partial = tarball.with_suffix(".partial")
    _run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], "tar of the rootfs")
    partial.rename(tarball)
    shutil.rmtree(rootfs)
    return tarball


def import_base(cache: Path = CACHE) -> Built:
    """``fedhealth/debian-base:bookworm`` from the cached rootfs tarball (``docker import``)."""
    start = time.monotonic()
    tarball = base_tarball(cache)
    if not image_exists(BASE_IMAGE):
        _run(["docker", "import", str(tarball), BASE_IMAGE], "docker import")
    return Built(BASE_IMAGE, time.monotonic() - start, image_size_mb(BASE_IMAGE))


def build_runtime(version: str, *, gpu: bool = False, base: str = BASE_IMAGE) -> Built:
    """``fedhealth/runtime`` (or ``runtime-gpu``) from ``wheelhouse/`` (``wheelhouse-gpu/``)."""
    wheelhouse = "wheelhouse-gpu" if gpu else "wheelhouse"
    if not (ROOT / wheelhouse / "requirements.lock").is_file():
        make = "wheelhouse-gpu" if gpu else "wheelhouse"
        raise ImageError(f"{ROOT / wheelhouse} has no requirements.lock: run `make {make}` first")
    name = "fedhealth/runtime-gpu" if gpu else "fedhealth/runtime"
    args = ["--build-arg", f"BASE={base}", "--build-arg", f"WHEELHOUSE={wheelhouse}"]
    return _build(name, version, DOCKER_DIR / "runtime.Dockerfile", ROOT, args)


def build_role(role: str, version: str) -> Built:
    """One role image from its runtime (context ``docker/``: nothing is copied in)."""
    dockerfile, runtime = ROLES[role]
    args = ["--build-arg", f"RUNTIME=fedhealth/{runtime}:{version}"]
    return _build(f"fedhealth/{role}", version, DOCKER_DIR / dockerfile, DOCKER_DIR, args)


def _build(name: str, version: str, dockerfile: Path, context: Path, args: list[str]) -> Built:
    start = time.monotonic()
    tags = [f"{name}:{version}", f"{name}:latest"]
    cmd = ["docker", "build", "--network", "none", "-f", str(dockerfile), *args]
    cmd += [arg for tag in tags for arg in ("-t", tag)]
    _run([*cmd, str(context)], f"docker build {tags[0]}", env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return Built(tags[0], time.monotonic() - start, image_size_mb(tags[0]))


def build_all(
    roles: tuple[str, ...] = CPU_ROLES, *, cache: Path = CACHE, gpu_base: str = BASE_IMAGE
) -> list[Built]:
    """The base, the runtime(s) the ``roles`` need, then the roles; what each took."""
    version = kit_version()
    built = [import_base(cache)]
    runtimes = {ROLES[role][1] for role in roles}
    if "runtime" in runtimes:
        built.append(build_runtime(version))
    if "runtime-gpu" in runtimes:
        built.append(build_runtime(version, gpu=True, base=gpu_base))
    built += [build_role(role, version) for role in roles]
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", nargs="+", choices=sorted(ROLES), default=list(CPU_ROLES))
    parser.add_argument("--gpu", action="store_true", help="also the GPU site (needs wheelhouse-gpu/)")
    parser.add_argument("--gpu-base", default=BASE_IMAGE, help="base image of the GPU runtime")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the base rootfs is cached")
    parser.add_argument("--report", type=Path, help="write the builds' seconds and sizes here (JSON)")
    args = parser.parse_args(argv)
    roles = tuple(dict.fromkeys([*args.roles, *(["site-gpu"] if args.gpu else [])]))
    try:
        built = build_all(roles, cache=args.cache, gpu_base=args.gpu_base)
    except (ImageError, subprocess.TimeoutExpired) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    for item in built:
        print(f"images: {item.image:<40} {item.seconds:7.1f} s {item.size_mb:8.0f} MB")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps([asdict(b) for b in built], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
