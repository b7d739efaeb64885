"""``fedhealth preflight``: check startup kits before deployment, with a readable summary.

A folder is a startup kit when its ``startup/`` holds ``fed_client.json``, ``fed_server.json`` or
``fed_admin.json`` (an empty ``startup/`` fails at once). For each kit, two checks:

1. Integrity: every file in the kit's signed folders (``startup/`` and ``local/``, signed by
   FLARE's ``SignatureBuilder`` with the root CA's key) still matches its signature, checked
   against the kit's own ``rootCA.pem`` with FLARE's ``SecurityContentManager``. Altered, missing
   and unsigned extra files are named. (FLARE itself checks only ``startup/`` when a site starts,
   and refuses to start with "The following files are not secure content".)
2. FLARE's ``nvflare preflight-check``: ports free and storage writable on the server, the server
   reachable from a site or admin kit, and a dry run.

For a site kit it also warns (a warning, not a failure) when ``startup/``, ``local/`` or the site's
data folder, or anything in them, is writable by the user FLARE runs as: the user running the
check, or ``--user`` (:mod:`fedhealth.onboarding.permissions` states the rule).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nvflare.fuel.sec.security_content_service import LoadResult, SecurityContentManager

from fedhealth.onboarding.permissions import Identity, permission_warnings

SIGNATURE_FILE = "signature.json"
SITE_STARTUP_FILE = "fed_client.json"  # in startup/ of a site kit (a server kit has fed_server.json)
# The file that makes startup/ a startup kit: a site's, the server's or an admin console's.
KIT_FILES = (SITE_STARTUP_FILE, "fed_server.json", "fed_admin.json")
# A site's own file that replaces a provisioned one (FLARE reads it instead, not merged).
OVERRIDES = {
    "authorization.json": "authorization.json.default (roles, BYOC)",
    "resources.json": "resources.json.default (class allow-list, GPUs)",
}
ROW = re.compile(r"^\|\s*(Check [^|]+?)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|$")


def nvflare_bin() -> str:
    """The ``nvflare`` command of this Python environment."""
    candidate = Path(sys.executable).parent / "nvflare"
    return str(candidate) if candidate.exists() else "nvflare"


@dataclass
class KitCheck:
    """The outcome of checking one kit."""

    kit: Path
    signed: bool = False
    tampered: list[str] = field(default_factory=list)
    flare_checks: list[tuple[str, str, str]] = field(default_factory=list)  # (check, problem, fix)
    flare_ok: bool = False
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # not failures: e.g. writable read-only folders

    @property
    def ok(self) -> bool:
        return not self.tampered and self.flare_ok


def check_signatures(kit: Path) -> tuple[bool, list[str]]:
    """``(signed, problems)`` for the kit's ``startup/`` and ``local/`` folders.

    ``signed`` is False when the kit carries no signatures at all (FLARE 2.9 signs only kits with
    HE or confidential-computing content). Each problem names a file and what is wrong with it.
    """
    kit = Path(kit).resolve()  # FLARE joins the root CA path onto the folder: make both absolute
    root_ca = kit / "startup" / "rootCA.pem"
    problems: list[str] = []
    signed = False
    for folder in (kit / "startup", kit / "local"):
        if not (folder / SIGNATURE_FILE).is_file():
            continue
        signed = True
        manager = SecurityContentManager(str(folder), root_cert=str(root_ca))
        for name in sorted(manager.signature):
            if (folder / name).is_dir():
                continue
            _, result = manager.load_content(name)
            if result == LoadResult.INVALID_SIGNATURE:
                problems.append(f"{folder.name}/{name} was altered after signing")
            elif result == LoadResult.NO_SUCH_CONTENT:
                problems.append(f"{folder.name}/{name} is missing or empty")
        if folder.name == "startup":  # local/ is where a site keeps its own settings: see site_files()
            for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != SIGNATURE_FILE):
                if path.name not in manager.signature:
                    problems.append(f"{folder.name}/{path.name} is not signed (added after provisioning)")
    return signed, problems


def site_files(kit: Path) -> list[str]:
    """Notes on files the site added to ``local/`` after provisioning (its own settings).

    A site's own ``authorization.json``, ``resources.json`` or ``privacy.json`` replaces the
    provisioned policy file whole: that is said loudly, since FLARE does not merge them.
    """
    local = Path(kit).resolve() / "local"
    signature = local / SIGNATURE_FILE
    signed = set(json.loads(signature.read_text())) if signature.is_file() else None
    notes = []
    for path in sorted(p for p in local.iterdir() if p.is_file()) if local.is_dir() else []:
        if path.name == SIGNATURE_FILE or (signed is not None and path.name in signed):
            continue
        if path.name in OVERRIDES:
            notes.append(f"local/{path.name} replaces the provisioned {OVERRIDES[path.name]} whole")
        elif signed is not None:
            notes.append(f"local/{path.name} was added by the site")
    return notes


def flare_preflight(kit: Path, timeout: float = 120.0) -> tuple[bool, list[tuple[str, str, str]], str]:
    """Run ``nvflare preflight-check -p kit``; returns ``(passed, rows, raw output)``."""
    proc = subprocess.run(
        [nvflare_bin(), "preflight-check", "-p", str(Path(kit).resolve())],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = proc.stdout + proc.stderr
    rows = [m.groups() for m in map(ROW.match, out.splitlines()) if m]
    return proc.returncode == 0, rows, out


def check_kit(kit: Path, *, timeout: float = 120.0, user: Identity | None = None) -> KitCheck:
    """Both checks for one kit, and for a site kit the permission warnings for ``user``.

    Args:
        kit: the startup kit folder.
        timeout: seconds for FLARE's check.
        user: the user FLARE runs as (default: the user running this check).
    """
    result = KitCheck(kit=Path(kit))
    if not (result.kit / "startup").is_dir():
        result.tampered = [f"{kit} is not a startup kit (no startup/ folder)"]
        return result
    if not any((result.kit / "startup" / name).is_file() for name in KIT_FILES):
        result.tampered = [f"{kit} is not a startup kit (startup/ holds none of {', '.join(KIT_FILES)})"]
        return result
    result.signed, result.tampered = check_signatures(result.kit)
    result.notes = site_files(result.kit)
    if (result.kit / "startup" / SITE_STARTUP_FILE).is_file():
        result.warnings = permission_warnings(result.kit, user)
    result.flare_ok, result.flare_checks, _ = flare_preflight(result.kit, timeout)
    return result


def summary(checks: list[KitCheck]) -> str:
    """One block per kit: integrity, each FLARE check, and the verdict."""
    lines = []
    for check in checks:
        lines.append(f"{check.kit.name}: {'READY' if check.ok else 'NOT READY'}")
        if check.tampered:
            lines += [f"  integrity  FAIL  {problem}" for problem in check.tampered]
        elif check.signed:
            lines.append("  integrity  ok    every signed file matches the root CA's signature")
        else:
            lines.append(
                "  integrity  -     kit carries no signatures (no HE context); mTLS is the trust anchor"
            )
        lines += [f"  note       {note}" for note in check.notes]
        lines += [f"  warning    {warning}" for warning in check.warnings]
        for name, problem, fix in check.flare_checks:
            passed = problem.upper() == "PASSED"
            lines.append(
                f"  {name:<32} {'ok' if passed else 'FAIL'}" + ("" if passed else f"  {problem} ({fix})")
            )
    return "\n".join(lines)
