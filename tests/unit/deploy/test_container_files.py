"""The container files as text: what each image may copy in, its user, the compose file's shape.

Needs no Docker (CI has none; tests/integration/test_containers.py builds and runs the images where
a daemon can start). ``docker compose`` is not installed on the machine these were written on, so
the compose file's structure is checked here instead of by ``docker compose config``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fedhealth.onboarding.preflight import KIT_FILES

ROOT = Path(__file__).resolve().parents[3]
DOCKER = ROOT / "docker"
ROLE_FILES = {
    "server.Dockerfile": ("server", "fedhealth/runtime:"),
    "site-cpu.Dockerfile": ("site", "fedhealth/runtime:"),
    "site-gpu.Dockerfile": ("site", "fedhealth/runtime-gpu:"),
    "admin.Dockerfile": ("admin", "fedhealth/runtime:"),
}
COMPOSE_SITES = ("cleveland", "hungary", "switzerland")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _mount(volume: str) -> tuple[str, str]:
    """``(source, target[:mode])`` of a compose volume (the source may hold ``${VAR:?message}``)."""
    match = re.fullmatch(r"(.+):(/[^:]+(?::ro|:rw)?)", volume)
    assert match, f"not a volume: {volume}"
    return match[1], match[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


def test_the_scripts_roles_are_the_dockerfiles_here() -> None:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("fedhealth_images_script", ROOT / "scripts" / "images.py")
    images = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = images  # dataclasses look their module up there
    spec.loader.exec_module(images)
    assert {dockerfile for dockerfile, _ in images.ROLES.values()} == set(ROLE_FILES)
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted([*ROLE_FILES, "runtime.Dockerfile"])


def test_the_runtime_installs_offline_from_the_lock_and_runs_as_uid_10001() -> None:
    steps = _instructions(DOCKER / "runtime.Dockerfile")
    run = " ".join(args for op, args in steps if op == "RUN")
    assert "--no-index" in run and "--require-hashes -r /tmp/wheelhouse/requirements.lock" in run
    assert "PIP_CONFIG_FILE=/dev/null" in run  # no index or find-links from a config file
    copies = [args for op, args in steps if op in ("COPY", "ADD")]
    assert copies == [
        "${WHEELHOUSE}/ /tmp/wheelhouse/",  # the build stage only
        "--from=install /opt/fedhealth/venv /opt/fedhealth/venv",  # the final image: no wheels
        "docker/entrypoint.sh /usr/local/bin/fedhealth-entrypoint",
    ]
    assert [args for op, args in steps if op == "FROM"] == ["${BASE} AS install", "${BASE}"]
    assert ("USER", "fedhealth") in steps and "useradd --uid 10001" in run
    # the last FROM is followed by USER before ENTRYPOINT: the participant never runs as root
    ops = [op for op, _ in steps]
    assert ops.index("USER", ops.index("FROM", 1) if ops.count("FROM") > 1 else 0) < ops.index("ENTRYPOINT")


@pytest.mark.parametrize("name", sorted(ROLE_FILES))
def test_a_role_image_copies_nothing_and_only_sets_its_role(name: str) -> None:
    role, runtime = ROLE_FILES[name]
    steps = _instructions(DOCKER / name)
    assert {op for op, _ in steps} <= {"ARG", "FROM", "LABEL", "ENV"}
    assert [args for op, args in steps if op == "FROM"] == ["${RUNTIME}"]
    arg = next(args for op, args in steps if op == "ARG")
    assert arg.startswith(f"RUNTIME={runtime}")
    env = " ".join(args for op, args in steps if op == "ENV")
    assert f"FEDHEALTH_ROLE={role}" in env


def test_the_build_context_holds_only_the_wheelhouses_and_the_entrypoint() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert lines == ["*", "!wheelhouse", "!wheelhouse-gpu", "!docker/entrypoint.sh"]


def test_the_entrypoint_needs_the_kit_file_of_its_role() -> None:
    text = (DOCKER / "entrypoint.sh").read_text()
    needed = dict(re.findall(r"^\s*(\w+)\) need=(\S+) ;;$", text, flags=re.M))
    assert needed == {"server": "fed_server.json", "site": "fed_client.json", "admin": "fed_admin.json"}
    assert set(needed.values()) == set(KIT_FILES)  # the same files preflight calls a kit
    assert 'exec bash "$KIT/startup/sub_start.sh" --once' in text


def test_compose_mounts_every_kit_read_only_and_bakes_nothing_in(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"server", *COMPOSE_SITES, "admin"}
    for name, service in services.items():
        assert "build" not in service and not service.get("privileged")
        assert service["image"].startswith("fedhealth/") and service["image"].endswith(
            ":${FEDHEALTH_VERSION:-latest}"
        )
        assert service.get("user") in (None, "10001")
        mounts = {target: source for source, target in map(_mount, service["volumes"])}
        assert mounts["/user_config:ro"].startswith("${KITS:?")  # the kit from the host, read-only
        assert f"{name}-workspace" == mounts["/vault/workspace"]
        assert service["network_mode"] == "host" and service["init"] is True
        assert service["cap_drop"] == ["ALL"] and service["security_opt"] == ["no-new-privileges:true"]
    for site in COMPOSE_SITES:
        mounts = services[site]["volumes"]
        assert any(v.endswith(":/data:ro") for v in mounts), site
        assert services[site]["image"].startswith("fedhealth/site-")
        assert services[site]["depends_on"] == ["server"]
    assert services["switzerland"]["profiles"] == ["gpu"]
    assert services["switzerland"]["image"].startswith("fedhealth/site-gpu:")
    assert services["admin"]["profiles"] == ["admin"] and services["admin"]["restart"] == "no"
    assert set(compose["volumes"]) == {f"{name}-workspace" for name in services}
