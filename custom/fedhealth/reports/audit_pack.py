"""The per-run audit pack: what ran, who submitted it, who took part, privacy spent and the decision, signed.

The server builds it at the end of every job (:class:`~fedhealth.widgets.audit_packer.AuditPacker`)
from the run record, the cross-site results, the job's meta and the config files it ran with, and
signs it with the private key of its own startup kit (``server.key``); anyone holding the project's
``rootCA.pem`` can check it (``fedhealth verify-audit``). The pack holds aggregates only, like the
run record: no patient value or identifier.

One file, ``audit_pack.json``: ``{"pack": {...}, "signature": {...}}``. The signature covers the
pack's canonical JSON bytes (:func:`canonical_bytes`: sorted keys, no spaces, ASCII, NaN as null),
so re-indenting the file does not break it but changing any value does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from fedhealth.reports.run_record import RunRecord
from fedhealth.reports.run_report import build_report
from fedhealth.secagg.identity import Identity, verify_signed

AUDIT_PACK_FILE = "audit_pack.json"
PACK_FORMAT = "fedhealth-audit-pack/1"
SERVER_FILES = {"key": "server.key", "cert": "server.crt", "root": "rootCA.pem"}
META_KEYS = (
    "name",
    "job_id",
    "submitter_name",
    "submitter_org",
    "submitter_role",
    "submit_time",
    "submit_time_iso",
)


def _clean(value: object) -> object:
    """JSON-safe copy: NaN and infinities become None (strict JSON has neither), tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def canonical_bytes(pack: dict) -> bytes:
    """The bytes the signature covers: sorted keys, no whitespace, ASCII, non-finite floats as null."""
    return json.dumps(
        _clean(pack), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def spec_hash(files: dict[str, bytes]) -> dict:
    """sha256 of each config file (name -> bytes) and of the set: sha256 over ``name\\0sha256\\n`` lines."""
    per_file = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}
    joined = "".join(f"{name}\0{digest}\n" for name, digest in per_file.items())
    return {"sha256": hashlib.sha256(joined.encode()).hexdigest(), "files": per_file}


def config_files(app_dir: Path) -> dict[str, bytes]:
    """The job config files of a deployed app folder (``config/*.json``, by name relative to the app).

    Hidden files are left out: FLARE adds its own signature of the submitted folder
    (``config/.__nvfl_sig.json``), which differs at each submission; without it the spec hash is the
    hash of the job folder's files, so anyone can recompute it from the job as committed.
    """
    app_dir = Path(app_dir)
    return {
        p.relative_to(app_dir).as_posix(): p.read_bytes()
        for p in sorted(app_dir.glob("config/*.json"))
        if not p.name.startswith(".")
    }


def build_pack(
    *,
    record: RunRecord,
    cross: dict,
    job_meta: dict,
    configs: dict[str, bytes],
    kit: dict,
    record_bytes: bytes | None = None,
) -> dict:
    """The audit pack of one run (unsigned).

    Args:
        record: the run record (``fedhealth_run.json``) as the server wrote it.
        cross: FLARE's cross-site results (``cross_val_results.json``); ``{}`` when the job has none.
        job_meta: the job's FLARE meta (submitter and submit time); ``{}`` when not available.
        configs: the job's config files as run, name -> bytes (:func:`config_files`).
        kit: ``{"version": ..., "git_revision": ...}`` of the fedhealth kit that ran.
        record_bytes: the run record file's bytes, to tie the pack to the downloaded record.
    """
    configs_json = {}
    for name, data in configs.items():
        try:
            configs_json[Path(name).name] = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
    report = build_report(
        str(job_meta.get("name") or record.get("job_id") or ""),
        record,
        cross,
        client_config=configs_json.get("config_fed_client.json"),
        server_config=configs_json.get("config_fed_server.json"),
    )
    sites = sorted(set(record.get("sites", [])) | {s["name"] for s in report["sites"]})
    return _clean(
        {
            "format": PACK_FORMAT,
            "job": {
                "name": report["job"],
                "job_id": record.get("job_id") or job_meta.get("job_id"),
                "spec": spec_hash(configs),
                "run_record_sha256": hashlib.sha256(record_bytes).hexdigest() if record_bytes else None,
            },
            "kit": dict(kit),
            "submission": {k: job_meta.get(k) for k in META_KEYS if k not in ("name", "job_id")},
            "run": {
                "status": record.get("status"),
                "abort_reason": record.get("abort_reason"),
                "started": record.get("started"),
                "ended": record.get("ended"),
                "rounds": report["rounds"],
            },
            "sites": sites,
            "participation": report["participation"],
            "failures": report["failures"],
            "privacy": {
                "summary": report["privacy"],
                "update_privacy": report["update_privacy"],
                "client_dp": report["client_dp"],
                "encryption": report["encryption"],
            },
            "rejected_updates": report["rejected_updates"],
            "late_results": report["late_results"],
            "site_metrics": report["sites"],
            "global": report["global"],
            "gate": report["gate"],
            "flags": report["flags"],
            "deploy_decision": report["deploy_decision"],
        }
    )


def server_identity(startup_dir: Path) -> Identity:
    """The server's signing identity from its startup kit; its name is its certificate's common name.

    Raises:
        ValueError: a file is missing (names which) or the certificate has no single common name.
    """
    files = {k: Path(startup_dir) / name for k, name in SERVER_FILES.items()}
    missing = sorted(p.name for p in files.values() if not p.is_file())
    if missing:
        raise ValueError(
            f"the server's startup kit {startup_dir} lacks {missing}: the audit pack is signed with it."
        )
    cert_pem = files["cert"].read_bytes()
    names = _common_names(cert_pem)
    if len(names) != 1:
        raise ValueError(f"{files['cert']}: expected one common name, found {names}.")
    return Identity(names[0], files["key"].read_bytes(), cert_pem, files["root"].read_bytes())


def _common_names(cert_pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _role(cert_pem: bytes) -> str | None:
    """The role FLARE writes into an admin user's certificate (unstructured name); None for sites/servers."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    roles = cert.subject.get_attributes_for_oid(NameOID.UNSTRUCTURED_NAME)
    return str(roles[0].value) if roles else None


def sign_pack(pack: dict, identity: Identity) -> dict:
    """The signed document: ``{"pack": pack, "signature": {signer, certificate, algorithm, value}}``."""
    return {
        "pack": _clean(pack),
        "signature": {
            "signer": identity.name,
            "certificate": identity.cert_pem.decode(),
            "algorithm": "sha256 (RSA-PSS / ECDSA / Ed25519, by the key) over canonical JSON of 'pack'",
            "value": base64.b64encode(identity.sign(canonical_bytes(pack))).decode(),
        },
    }


def verify_pack(doc: dict, root_pem: bytes, *, server: str | None = None) -> dict:
    """Check a signed audit pack; returns the pack.

    The signer's certificate must be issued by the project's root CA, be for the signer's name and
    match the signature; the signer must be the server: ``server`` when given, and never one of the
    run's sites or an admin user (FLARE writes a role into a user's certificate, never a server's).

    Raises:
        ValueError: what failed (format, certificate, signer or signature).
    """
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("pack"), dict)
        or not isinstance(doc.get("signature"), dict)
    ):
        raise ValueError("not an audit pack: expected {'pack': {...}, 'signature': {...}}.")
    pack, sig = doc["pack"], doc["signature"]
    if pack.get("format") != PACK_FORMAT:
        raise ValueError(f"unknown audit pack format {pack.get('format')!r} (expected {PACK_FORMAT!r}).")
    signer, cert, value = sig.get("signer"), sig.get("certificate"), sig.get("value")
    if not (isinstance(signer, str) and isinstance(cert, str) and isinstance(value, str)):
        raise ValueError("the signature block lacks its signer, certificate or value.")
    try:
        signature = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise ValueError("the signature value is not base64.") from exc
    verify_signed(
        name=signer,
        data=canonical_bytes(pack),
        signature=signature,
        cert_pem=cert.encode(),
        root_pem=root_pem,
    )
    if server is not None and signer != server:
        raise ValueError(f"signed by {signer!r}, not by the server {server!r}.")
    if signer in (pack.get("sites") or []):
        raise ValueError(f"signed by {signer!r}, a site of the run, not by the server.")
    role = _role(cert.encode())
    if role is not None:
        raise ValueError(f"signed by {signer!r}, a user (role {role!r}), not by the server.")
    return pack


def summary_lines(pack: dict, signer: str) -> list[str]:
    """A few lines for the terminal: job, signer, submitter, sites, ε per site, rejections, decision."""
    job, sub, run = pack.get("job", {}), pack.get("submission", {}), pack.get("run", {})
    decision = pack.get("deploy_decision")
    if isinstance(decision, dict):
        decision = decision.get("decision") or decision.get("deploy") or json.dumps(decision, sort_keys=True)
    spec = (job.get("spec") or {}).get("sha256")
    sites = ", ".join(pack.get("sites") or []) or "-"
    return [
        f"audit pack of job {job.get('name')} ({job.get('job_id')}): "
        f"signature valid, signed by server {signer!r}",
        f"spec sha256 {spec}; kit {json.dumps(pack.get('kit'), sort_keys=True)}",
        f"submitted by {sub.get('submitter_name')} ({sub.get('submitter_org')}) "
        f"at {sub.get('submit_time_iso')}",
        f"status {run.get('status')}, {run.get('rounds')} rounds; sites: {sites}",
        f"rejected updates: {len(pack.get('rejected_updates') or [])}; deployment decision: {decision}",
    ]


def load_signed(path: Path) -> tuple[dict, Path]:
    """The signed pack in ``path`` (the pack file, or a result folder holding one) and the file read.

    Raises:
        FileNotFoundError: no ``audit_pack.json`` there.
        ValueError: the file is not JSON.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob(AUDIT_PACK_FILE), key=lambda p: (len(p.parts), p))
        if not found:
            raise FileNotFoundError(
                f"no {AUDIT_PACK_FILE} under {path}: did the job run fedhealth's AuditPacker?"
            )
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file.")
    try:
        return json.loads(path.read_text()), path
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not JSON ({exc}).") from exc
