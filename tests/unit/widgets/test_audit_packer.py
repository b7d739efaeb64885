"""AuditPacker with FLARE's FLContext and Workspace: a signed pack in the run folder, or a logged error."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from flare_doubles import WorkspaceEngine
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.workspace import Workspace

from fedhealth.reports.audit_pack import load_signed, verify_pack
from fedhealth.widgets.audit_packer import AuditPacker
from fedhealth_tools.secagg.pki import make_pki

JOB_ID = "995e77bd-ab92-49d2-9b14-5f9800c78cc4"
RESULT = Path(__file__).resolve().parents[1] / "reports" / "data" / "heart_fedprox_result" / "workspace"
JOB_APP = Path(__file__).resolve().parents[3] / "jobs" / "heart_fedprox" / "app"
SERVER = "fl-server"
# (files removed from the server's workspace, the error logged): the job goes on, no pack is written.
BROKEN = [
    ("startup/server.key", r"lacks \['server.key'\]"),
    ("run/fedhealth_run.json", "no fedhealth_run.json in"),
]


def _server(tmp_path: Path) -> tuple[FLContext, Path, bytes]:
    root, ids = make_pki([SERVER])
    startup = tmp_path / "startup"
    startup.mkdir()
    (startup / "server.key").write_bytes(ids[SERVER].key_pem)
    (startup / "server.crt").write_bytes(ids[SERVER].cert_pem)
    (startup / "rootCA.pem").write_bytes(root)
    (tmp_path / "local").mkdir()
    workspace = Workspace(str(tmp_path), site_name="server")
    run_dir = Path(workspace.get_run_dir(JOB_ID))
    shutil.copytree(RESULT, run_dir)
    shutil.copytree(JOB_APP, run_dir / "app_server")
    fl_ctx = FLContext()
    fl_ctx.set_prop(ReservedKey.ENGINE, WorkspaceEngine(workspace), private=True, sticky=True)
    fl_ctx.set_prop(ReservedKey.RUN_NUM, JOB_ID, private=False, sticky=True)
    return fl_ctx, run_dir, root


def test_end_run_writes_a_pack_the_root_ca_verifies(tmp_path: Path) -> None:
    fl_ctx, run_dir, root = _server(tmp_path)
    AuditPacker().handle_event(EventType.END_RUN, fl_ctx)
    doc, path = load_signed(run_dir)
    assert path == run_dir / "audit_pack.json"
    pack = verify_pack(doc, root, server=SERVER)
    assert pack["job"]["job_id"] == JOB_ID
    assert pack["submission"]["submitter_name"] == "admin@fedhealth.org"
    assert pack["sites"] == ["cleveland", "hungary", "switzerland", "va_long_beach"]
    assert pack["kit"]["version"] == "0.1.0"
    assert sorted(pack["job"]["spec"]["files"]) == [
        "config/config_fed_client.json",
        "config/config_fed_server.json",
    ]
    assert pack["deploy_decision"] == "DO NOT DEPLOY"
    assert "<td>deployment decision</td><td>DO NOT DEPLOY</td>" in (run_dir / "audit_pack.html").read_text()


def test_other_events_write_nothing(tmp_path: Path) -> None:
    fl_ctx, run_dir, _ = _server(tmp_path)
    AuditPacker().handle_event(EventType.START_RUN, fl_ctx)
    assert not (run_dir / "audit_pack.json").exists()


@pytest.mark.parametrize(("missing", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_failure_is_logged_and_never_raised(tmp_path: Path, missing: str, message: str) -> None:
    fl_ctx, run_dir, _ = _server(tmp_path)
    target = run_dir / Path(missing).name if missing.startswith("run/") else tmp_path / missing
    target.unlink()
    packer = AuditPacker()
    errors: list[str] = []
    packer.log_error = lambda ctx, msg, fire_event=True: errors.append(msg)  # type: ignore[method-assign]
    packer.handle_event(EventType.END_RUN, fl_ctx)
    assert not (run_dir / "audit_pack.json").exists()
    assert len(errors) == 1
    assert errors[0].startswith("audit pack not written: ")
    assert re.search(message, errors[0])


@pytest.mark.parametrize("name", ["", "../x.json", "a/b.json"], ids=["empty", "parent", "subdir"])
def test_file_name_must_be_plain(name: str) -> None:
    with pytest.raises(ValueError, match="file_name must be a plain file name"):
        AuditPacker(file_name=name)


def test_pack_in_run_folder_is_json_with_signature(tmp_path: Path) -> None:
    fl_ctx, run_dir, _ = _server(tmp_path)
    AuditPacker(file_name="pack.json").handle_event(EventType.END_RUN, fl_ctx)
    doc = json.loads((run_dir / "pack.json").read_text())
    assert doc["signature"]["signer"] == SERVER
    assert doc["signature"]["certificate"].startswith("-----BEGIN CERTIFICATE-----")
