"""End to end in FLARE POC mode: the server signs the run's audit pack, and the download verifies.

Slow (about a minute); marked ``slow``. Its own workspace under ``tmp_path`` on its own port.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.constants import HEART_SITES
from fedhealth.reports.audit_pack import config_files, load_signed, spec_hash, verify_pack
from fedhealth_tools.cli import main
from fedhealth_tools.poc.demo import run_demo
from fedhealth_tools.poc.processes import free_port
from fedhealth_tools.poc.variants import job_variant, project_on_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 2
SERVER = "server"  # provision/poc.yml


def test_poc_download_holds_a_pack_the_root_ca_verifies(tmp_path: Path, capsys) -> None:
    workspace = tmp_path / "fedhealth_test_ws"
    job = job_variant(
        ROOT / "jobs" / "heart_fedprox",
        tmp_path / "jobs" / "heart_fedprox",
        rounds=ROUNDS,
        executor_args={"batch_size": 16},
    )
    run_demo(
        job_dir=job,
        project_file=project_on_port(ROOT / "provision" / "poc.yml", tmp_path / "project.yml", free_port()),
        workspace=workspace,
        results_dir=tmp_path / "results",
        timeout=300,
    )
    capsys.readouterr()
    (result,) = sorted((workspace / "downloads").iterdir())
    root_ca = next(p for p in sorted(workspace.rglob("rootCA.pem")) if p.parent.parent.name == SERVER)
    doc, path = load_signed(result)
    pack = verify_pack(doc, root_ca.read_bytes(), server=SERVER)
    assert pack["job"]["job_id"] == result.name
    assert pack["job"]["name"] == "heart_fedprox"
    assert pack["run"] == {**pack["run"], "status": "finished", "rounds": ROUNDS}
    assert pack["sites"] == sorted(HEART_SITES)
    assert pack["submission"]["submitter_name"]  # the POC admin who submitted it
    assert pack["job"]["spec"] == spec_hash(config_files(job / "app"))  # the job folder as submitted
    assert pack["deploy_decision"] in {"DEPLOY", "DO NOT DEPLOY"}
    assert main(["verify-audit", str(result), "--root-ca", str(root_ca), "--server", SERVER]) == 0
    assert f"signed by server '{SERVER}'" in capsys.readouterr().out
    path.write_text(json.dumps(doc, indent=2).replace('"status": "finished"', '"status": "finishee"', 1))
    assert main(["verify-audit", str(result), "--root-ca", str(root_ca)]) == 1
    assert "signature does not match" in capsys.readouterr().err
