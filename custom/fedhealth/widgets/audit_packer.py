"""Server widget that writes the run's signed audit pack (``audit_pack.json``) when the run ends.

On ``END_RUN`` it reads what the other server widgets wrote into the run folder (the run record of
:class:`~fedhealth.widgets.run_recorder.RunRecorder`, FLARE's cross-site results), the job's meta
(``meta.json`` in the run folder, else the job meta FLARE put in the context) and the server app's
config files, builds the pack (:mod:`fedhealth.reports.audit_pack`) and signs it with the server's
startup kit. The file lands in the run folder, so it is downloaded with the job result, with a
one-page HTML rendering of it (``audit_pack.html``, not signed: the JSON is the record).

List it after ``run_recorder`` and ``json_generator``: FLARE fires ``END_RUN`` to components in
the config's order, and those two write their files on ``END_RUN`` too. A failure here is logged
as an error and never stops or fails the job.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from nvflare.apis.event_type import EventType
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext

import fedhealth
from fedhealth.constants import CROSS_VAL_DIR, CROSS_VAL_FILE, RUN_RECORD_FILE
from fedhealth.reports.audit_html import AUDIT_HTML_FILE, audit_html
from fedhealth.reports.audit_pack import AUDIT_PACK_FILE, build_pack, config_files, server_identity, sign_pack

JOB_META_FILE = "meta.json"
SERVER_APP = "app_server"


def git_revision(folder: Path) -> str | None:
    """The git commit of the checkout holding ``folder``; None outside a checkout or without git."""
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    revision = out.stdout.strip()
    return revision if out.returncode == 0 and len(revision) == 40 else None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


class AuditPacker(FLComponent):
    """Writes ``audit_pack.json``, signed with the server's provisioned key, into the run folder.

    Args:
        file_name: the pack's file name in the run folder.
    """

    def __init__(self, *, file_name: str = AUDIT_PACK_FILE) -> None:
        super().__init__()
        if not file_name or Path(file_name).name != file_name:
            raise ValueError(f"file_name must be a plain file name, not {file_name!r}.")
        self.file_name = file_name

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type != EventType.END_RUN:
            return
        try:
            path = self.write_pack(fl_ctx)
        except Exception as exc:  # noqa: BLE001 - the audit pack must never break the job
            self.log_error(fl_ctx, f"audit pack not written: {type(exc).__name__}: {exc}")
            return
        self.log_info(fl_ctx, f"audit pack written and signed: {path}")

    def write_pack(self, fl_ctx: FLContext) -> Path:
        """Build, sign and write the pack; returns its path (raises on any failure)."""
        workspace = fl_ctx.get_engine().get_workspace()
        job_id = fl_ctx.get_job_id()
        run_dir = Path(workspace.get_run_dir(job_id))
        record_path = run_dir / RUN_RECORD_FILE
        if not record_path.is_file():
            raise FileNotFoundError(
                f"no {RUN_RECORD_FILE} in {run_dir}: list RunRecorder in the server config"
            )
        record_bytes = record_path.read_bytes()
        meta = _read_json(run_dir / JOB_META_FILE)
        if not meta:
            context_meta = fl_ctx.get_prop(FLContextKey.JOB_META, None)
            meta = dict(context_meta) if isinstance(context_meta, dict) else {}
        app_dir = run_dir / SERVER_APP
        package = Path(fedhealth.__file__).resolve().parent
        pack = build_pack(
            record=json.loads(record_bytes),
            cross=_read_json(run_dir / CROSS_VAL_DIR / CROSS_VAL_FILE),
            job_meta=meta,
            configs=config_files(app_dir) if app_dir.is_dir() else {},
            kit={"version": fedhealth.__version__, "git_revision": git_revision(package)},
            record_bytes=record_bytes,
        )
        signed = sign_pack(pack, server_identity(Path(workspace.get_startup_kit_dir())))
        out = run_dir / self.file_name
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(signed, indent=2, sort_keys=True))
        tmp.replace(out)
        (run_dir / AUDIT_HTML_FILE).write_text(audit_html(signed["pack"], signed["signature"]["signer"]))
        return out
