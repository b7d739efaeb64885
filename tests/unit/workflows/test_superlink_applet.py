"""FLARE 2.9's SuperLink command line made Flower 1.42's (fedhealth.workflows.superlink_applet)."""

from __future__ import annotations

import shlex

import pytest

from fedhealth.workflows.superlink_applet import NO_INSTALLS, superlink_command

BIN = "/venv/bin/flower-superlink"
# What FLARE 2.9.0's FlowerServerApplet builds (one space after the empty database argument included).
FLARE_CMD = (
    f"{BIN} --insecure --fleet-api-type grpc-adapter  --serverappio-api-address 127.0.0.1:41000 "
    "--fleet-api-address 127.0.0.1:41001 --control-api-address 127.0.0.1:41002 "
)


def test_runtime_api_takes_flares_control_address_and_installs_are_off() -> None:
    parts = shlex.split(superlink_command(FLARE_CMD))
    assert parts == [
        BIN,
        "--insecure",
        "--fleet-api-type",
        "grpc-adapter",
        "--fleet-api-address",
        "127.0.0.1:41001",
        "--control-api-address",
        "127.0.0.1:41002",
        "--host",
        "127.0.0.1",
        "--port",
        "41002",
        NO_INSTALLS,
    ]


# (case id, command, message part)
REFUSED = [
    ("not-superlink", "/venv/bin/flower-supernode --insecure", "not a flower-superlink command"),
    (
        "installs",
        f"{BIN} --allow-runtime-dependency-installation --control-api-address 127.0.0.1:1",
        "never starts",
    ),
    ("no-control", f"{BIN} --insecure", "has no --control-api-address"),
]


@pytest.mark.parametrize(("cmd", "why"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_unexpected_commands_are_refused(cmd: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        superlink_command(cmd)


def test_an_equals_form_is_removed_too() -> None:
    cmd = f"{BIN} --serverappio-api-address=127.0.0.1:5 --control-api-address 127.0.0.1:6"
    assert "--serverappio-api-address" not in superlink_command(cmd)
