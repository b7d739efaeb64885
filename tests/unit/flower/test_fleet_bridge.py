"""The Fleet bridge: a SuperNode's HTTP Fleet calls handed to FLARE's relay and answered (stdlib only)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from fedhealth.flower.fleet_bridge import CALLS, PROTOBUF, FleetBridge


def _post(address: str, path: str, body: bytes) -> tuple[int, bytes, str]:
    request = urllib.request.Request(f"http://{address}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read(), reply.headers["content-type"]
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers["content-type"]


@pytest.fixture
def bridge():
    seen: list[tuple[str, bytes]] = []

    def relay(name: str, body: bytes) -> bytes | None:
        seen.append((name, body))
        if body == b"stop":
            return None
        if body == b"boom":
            raise ConnectionError("lost")
        return b"reply:" + body

    b = FleetBridge(relay)
    b.start()
    yield b, seen
    b.stop()


# (case id, path, body, status, reply body part)
CASES = [
    ("get-fab", "/v1/fleet/get-fab", b"\x01\x02", 200, b"reply:\x01\x02"),
    ("pull-messages", "/v1/fleet/pull-messages", b"", 200, b"reply:"),
    ("stopped", "/v1/fleet/get-run", b"stop", 503, b"the site stopped this Flower run"),
    ("relay-fails", "/v1/fleet/push-messages", b"boom", 502, b"relay failed: ConnectionError"),
    ("unknown-call", "/v1/fleet/delete-everything", b"x", 404, b"unknown Fleet call"),
    ("other-api", "/v1/control/start-run", b"x", 404, b"unknown Fleet call"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "reply"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bridge_relays_fleet_calls(bridge, path: str, body: bytes, status: int, reply: bytes) -> None:
    b, seen = bridge
    code, data, kind = _post(b.address, path, body)
    assert (code, data) == (status, reply)
    assert (kind == PROTOBUF) == (status == 200)
    relayed = status != 404
    assert seen == ([(CALLS[path.rsplit("/", 1)[1]], body)] if relayed else [])
    assert b.address.startswith("127.0.0.1:")


def test_every_call_names_its_request_type() -> None:
    assert len(CALLS) == 12 and all(name.endswith("Request") for name in CALLS.values())
    assert CALLS["get-fab"] == "GetFabRequest" and CALLS["register-node"] == "RegisterNodeFleetRequest"
