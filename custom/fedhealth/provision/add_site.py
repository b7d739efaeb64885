"""Adding a hospital (or an admin) without regenerating or redistributing anyone else's kit.

FLARE's provisioning keeps its state next to the kits (``<workspace>/<project>/state/cert.json``:
the root CA and every participant's certificate and key). Provisioning the same project again,
with the new participant added to the project file, reuses that state: the root CA and every
existing certificate come out byte-identical, so the running server and sites need nothing new.
Only the new participant's kit is sent out.

One catch in FLARE 2.9: ``HEBuilder`` makes a fresh TenSEAL context on every run, so the new
kit's ``client_context.tenseal`` would not match the one every other site and the server hold.
:func:`add_participants` therefore copies the federation's existing context into the new site
kits and signs their ``startup/`` and ``local/`` again with the root CA's key (as
``SignatureBuilder`` did), and checks that no existing certificate changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from nvflare.lighter.utils import load_private_key, sign_folders

from fedhealth.poc.workspace import PocError
from fedhealth.provision.kits import fingerprint, run_provision

CLIENT_CONTEXT = "client_context.tenseal"
SIGNATURE = "signature.json"


def _latest_prod(project_dir: Path) -> Path:
    prods = sorted(project_dir.glob("prod_*"))
    if not prods:
        raise PocError(f"no earlier provisioning in {project_dir}: provision the project first")
    return prods[-1]


def _certificates(prod: Path) -> dict[str, str]:
    """participant -> SHA-256 fingerprint of its certificate, for every kit in ``prod``."""
    out = {}
    for kit in sorted(p for p in prod.iterdir() if (p / "startup").is_dir()):
        cert = next(
            (kit / "startup" / n for n in ("server.crt", "client.crt") if (kit / "startup" / n).is_file()),
            None,
        )
        if cert is not None:
            out[kit.name] = fingerprint(cert)
    return out


def _server_name(prod: Path) -> str:
    for kit in prod.iterdir():
        if (kit / "startup" / "fed_server.json").is_file():
            return kit.name
    raise PocError(f"{prod} holds no server kit")


def add_participants(project_file: Path, workspace: Path, names: list[str]) -> dict[str, Path]:
    """Provision ``names`` (already added to ``project_file``) into the existing ``workspace``.

    Args:
        project_file: the project file with the new participants added (nothing else changed).
        workspace: the folder of the earlier provisioning (holds ``<project>/state``).
        names: the participants to hand out kits to.

    Returns:
        name -> path of the new kit.

    Raises:
        PocError: no earlier provisioning, a name that already had a kit or is not in the project,
            or an existing certificate that changed.
    """
    workspace = Path(workspace).resolve()
    project = yaml.safe_load(Path(project_file).read_text())
    project_dir = workspace / project["name"]
    previous = _latest_prod(project_dir)
    before = _certificates(previous)
    listed = {p["name"] for p in project.get("participants", [])}
    again = sorted(set(names) & set(before))
    missing = sorted(set(names) - listed)
    if again or missing:
        raise PocError(f"cannot add {names}: already provisioned {again}, not in {project_file}: {missing}")
    new = run_provision(project_file, workspace, server_host=_server_name(previous))
    changed = sorted(n for n, fp in _certificates(new).items() if n in before and before[n] != fp)
    if changed:
        raise PocError(f"re-provisioning changed the certificates of {changed}; do not distribute {new}")
    state = json.loads((project_dir / "state" / "cert.json").read_text())
    root_key = load_private_key(state["root_pri_key"])
    context = next(previous.glob(f"*/startup/{CLIENT_CONTEXT}"), None)
    kits = {}
    for name in names:
        kit = new / name
        if context is not None and (kit / "startup" / CLIENT_CONTEXT).is_file():
            shutil.copyfile(context, kit / "startup" / CLIENT_CONTEXT)
            for folder in (kit / "startup", kit / "local"):
                (folder / SIGNATURE).unlink(missing_ok=True)
                sign_folders(str(folder), root_key, signature_file=SIGNATURE)
        kits[name] = kit
    return kits
