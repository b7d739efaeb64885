"""``fedhealth provision`` and ``fedhealth preflight`` from the command line (real provisioning)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fedhealth_tools.cli import main

REPO = Path(__file__).resolve().parents[3]


def test_provision_add_and_preflight(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workspace = tmp_path / "ws"
    project = REPO / "project.yml"
    assert (
        main(["provision", "-p", str(project), "-w", str(workspace), "--server-host", "fl.example.test"]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("  certificate: SHA-256 ") == 12  # server, 4 sites, 7 admins
    assert "server fl.example.test (fedhealth)" in out and "keep secret: startup/server.key" in out

    added = yaml.safe_load(project.read_text())
    added["participants"].append({"name": "st_marys", "type": "client", "org": "st_marys"})
    added_file = tmp_path / "added.yml"
    added_file.write_text(yaml.safe_dump(added))
    assert main(["provision", "-p", str(added_file), "-w", str(workspace), "--add", "st_marys"]) == 0
    out = capsys.readouterr().out
    assert out.count("  certificate: SHA-256 ") == 1 and "site st_marys (st_marys)" in out
    assert "Only the kit(s) above are new" in out
    assert main(["provision", "-p", str(added_file), "-w", str(workspace), "--add", "st_marys"]) == 1
    assert "already provisioned ['st_marys']" in capsys.readouterr().err

    kit = workspace / "fedhealth" / "prod_01" / "st_marys"
    (kit / "startup" / "fed_client.json").write_text("{}")
    assert main(["preflight", str(kit), "--timeout", "60"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("st_marys: NOT READY")
    assert "integrity  FAIL  startup/fed_client.json was altered after signing" in out
