"""The audit pack: its contents from a recorded run, signing, and every way verification must fail."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fedhealth.reports.audit_pack import (
    PACK_FORMAT,
    build_pack,
    canonical_bytes,
    config_files,
    load_signed,
    server_identity,
    sign_pack,
    spec_hash,
    verify_pack,
)
from fedhealth.reports.run_report import find_run_files
from fedhealth.secagg.identity import Identity
from fedhealth_tools.cli import main
from fedhealth_tools.secagg.pki import make_pki

RESULT = Path(__file__).parent / "data" / "heart_fedprox_result"
JOB = Path(__file__).resolve().parents[3] / "jobs" / "heart_fedprox" / "app"
SERVER = "fl-server"
SITES = ["cleveland", "hungary", "switzerland", "va_long_beach"]
# (what is changed in the written file, old text, new text): one byte each, inside the signed pack.
TAMPER = [
    ("submitter", '"submitter_name": "admin@fedhealth.org"', '"submitter_name": "admin@fedhealth.orh"'),
    ("decision", '"deploy_decision": "DO NOT DEPLOY"', '"deploy_decision": "DO NOT DEPLOZ"'),
    ("n_test", '"n_test": 104', '"n_test": 105'),
    ("status", '"status": "finished"', '"status": "finishee"'),
]


@pytest.fixture(scope="module")
def pki() -> tuple[bytes, dict[str, Identity]]:
    return make_pki([SERVER, *SITES])


@pytest.fixture(scope="module")
def pack() -> dict:
    record, cross = find_run_files(RESULT)
    meta = json.loads((RESULT / "workspace" / "meta.json").read_text())
    record_bytes = (RESULT / "workspace" / "fedhealth_run.json").read_bytes()
    return build_pack(
        record=record,
        cross=cross,
        job_meta=meta,
        configs=config_files(JOB),
        kit={"version": "0.1.0", "git_revision": "a" * 40},
        record_bytes=record_bytes,
    )


def test_pack_holds_the_run_as_recorded(pack: dict) -> None:
    assert pack["format"] == PACK_FORMAT
    assert pack["job"]["name"] == "heart_fedprox"
    assert pack["job"]["job_id"] == "995e77bd-ab92-49d2-9b14-5f9800c78cc4"
    record_sha = hashlib.sha256((RESULT / "workspace" / "fedhealth_run.json").read_bytes()).hexdigest()
    assert pack["job"]["run_record_sha256"] == record_sha
    server_cfg = (JOB / "config" / "config_fed_server.json").read_bytes()
    assert (
        pack["job"]["spec"]["files"]["config/config_fed_server.json"]
        == hashlib.sha256(server_cfg).hexdigest()
    )
    assert sorted(pack["job"]["spec"]["files"]) == [
        "config/config_fed_client.json",
        "config/config_fed_server.json",
    ]
    assert pack["submission"]["submitter_name"] == "admin@fedhealth.org"
    assert pack["submission"]["submit_time_iso"] == "2026-12-06T16:01:18.508141+00:00"
    assert pack["kit"] == {"version": "0.1.0", "git_revision": "a" * 40}
    assert pack["sites"] == SITES
    assert pack["run"]["status"] == "finished" and pack["run"]["rounds"] == 19
    assert pack["deploy_decision"] == "DO NOT DEPLOY"
    assert pack["rejected_updates"] == []
    cleveland = next(s for s in pack["site_metrics"] if s["name"] == "cleveland")
    assert cleveland["n_test"] == 104 and cleveland["deploy"] == "DEPLOY"
    auc = cleveland["metrics"]["auc"]
    assert auc["lo"] == pytest.approx(0.78002, abs=1e-5) and auc["hi"] == pytest.approx(0.92780, abs=1e-5)
    assert set(pack["privacy"]) == {"summary", "update_privacy", "client_dp", "encryption"}


def test_spec_hash_changes_with_any_config_byte() -> None:
    files = {"config/a.json": b'{"x": 1}', "config/b.json": b"{}"}
    changed = dict(files, **{"config/a.json": b'{"x": 2}'})
    assert spec_hash(files)["sha256"] != spec_hash(changed)["sha256"]
    assert spec_hash(files) == spec_hash(dict(reversed(list(files.items()))))


def test_config_files_leave_out_flares_signature(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config_fed_server.json").write_text("{}")
    (tmp_path / "config" / ".__nvfl_sig.json").write_text('{"sig": 1}')
    (tmp_path / "config" / "notes.txt").write_text("x")
    assert config_files(tmp_path) == {"config/config_fed_server.json": b"{}"}


def test_canonical_bytes_are_strict_json_and_key_order_free() -> None:
    assert canonical_bytes({"b": float("nan"), "a": [1.5, float("inf")]}) == b'{"a":[1.5,null],"b":null}'
    assert canonical_bytes({"x": 1, "y": 2}) == canonical_bytes({"y": 2, "x": 1})


def test_signed_pack_verifies_and_survives_reindenting(pki, pack: dict) -> None:
    root, ids = pki
    doc = sign_pack(pack, ids[SERVER])
    assert verify_pack(doc, root) == pack
    assert verify_pack(json.loads(json.dumps(doc, indent=4)), root, server=SERVER) == pack


@pytest.mark.parametrize(("what", "old", "new"), TAMPER, ids=[t[0] for t in TAMPER])
def test_one_changed_byte_fails(pki, pack: dict, tmp_path: Path, what: str, old: str, new: str) -> None:
    root, ids = pki
    path = tmp_path / "audit_pack.json"
    text = json.dumps(sign_pack(pack, ids[SERVER]), indent=2)
    assert text.count(old) >= 1, what
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError, match="signature does not match its certificate"):
        verify_pack(load_signed(path)[0], root)


def test_a_site_signature_is_not_the_servers(pki, pack: dict) -> None:
    root, ids = pki
    with pytest.raises(ValueError, match="'cleveland', a site of the run, not by the server"):
        verify_pack(sign_pack(pack, ids["cleveland"]), root)


def test_the_named_server_must_be_the_signer(pki, pack: dict) -> None:
    root, ids = pki
    with pytest.raises(ValueError, match="signed by 'fl-server', not by the server 'other-server'"):
        verify_pack(sign_pack(pack, ids[SERVER]), root, server="other-server")


def test_a_site_key_claiming_the_server_name_fails(pki, pack: dict) -> None:
    root, ids = pki
    site = ids["cleveland"]
    forged = sign_pack(pack, Identity(SERVER, site.key_pem, site.cert_pem, root))
    with pytest.raises(ValueError, match="certificate is for \\['cleveland'\\], not for 'fl-server'"):
        verify_pack(forged, root)


def test_a_server_of_another_project_fails(pki, pack: dict) -> None:
    root, _ = pki
    _, other = make_pki([SERVER], root_name="another-root")
    with pytest.raises(ValueError, match="not issued by the project's root CA"):
        verify_pack(sign_pack(pack, other[SERVER]), root)


def test_not_a_pack_is_named(pki) -> None:
    root, _ = pki
    with pytest.raises(ValueError, match="not an audit pack"):
        verify_pack({"pack": []}, root)
    with pytest.raises(ValueError, match="unknown audit pack format"):
        verify_pack({"pack": {"format": "x"}, "signature": {}}, root)


def _startup(tmp_path: Path, identity: Identity) -> Path:
    startup = tmp_path / "startup"
    startup.mkdir()
    (startup / "server.key").write_bytes(identity.key_pem)
    (startup / "server.crt").write_bytes(identity.cert_pem)
    (startup / "rootCA.pem").write_bytes(identity.root_pem)
    return startup


def test_server_identity_from_its_startup_kit(pki, pack: dict, tmp_path: Path) -> None:
    root, ids = pki
    identity = server_identity(_startup(tmp_path, ids[SERVER]))
    assert identity.name == SERVER
    assert verify_pack(sign_pack(pack, identity), root, server=SERVER) == pack
    (tmp_path / "startup" / "server.key").unlink()
    with pytest.raises(ValueError, match=r"lacks \['server.key'\]"):
        server_identity(tmp_path / "startup")


def test_cli_verify_audit(pki, pack: dict, tmp_path: Path, capsys) -> None:
    root, ids = pki
    (tmp_path / "rootCA.pem").write_bytes(root)
    result = tmp_path / "result" / "workspace"
    result.mkdir(parents=True)
    (result / "audit_pack.json").write_text(json.dumps(sign_pack(pack, ids[SERVER]), indent=2))
    args = ["verify-audit", str(tmp_path / "result"), "--root-ca", str(tmp_path / "rootCA.pem")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "signature valid, signed by server 'fl-server'" in out
    assert "submitted by admin@fedhealth.org (fedhealth)" in out
    assert "deployment decision: DO NOT DEPLOY" in out
    text = (result / "audit_pack.json").read_text()
    (result / "audit_pack.json").write_text(text.replace('"n_test": 104', '"n_test": 105', 1))
    assert main(args) == 1
    assert "INVALID: fl-server: the signature does not match" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["verify-audit", str(tmp_path / "empty"), "--root-ca", str(tmp_path / "rootCA.pem")]) == 1
    assert "no audit_pack.json under" in capsys.readouterr().err
    assert main(["verify-audit", str(tmp_path / "nothing"), "--root-ca", str(tmp_path / "rootCA.pem")]) == 1
    assert "nothing: no such file" in capsys.readouterr().err
