"""Adding a hospital (or an admin) without regenerating or redistributing anyone else's kit.

FLARE's provisioning keeps its state next to the kits (``<workspace>/<project>/state/cert.json``:
the root CA and every participant's certificate and key). Provisioning the same project again,
with the new participant added to the project file, reuses that state: the root CA and every
existing certificate come out byte-identical, so the running server and sites need nothing new.
Only the new participant's kit is sent out.

One catch in FLARE 2.9: ``HEBuilder`` makes a fresh TenSEAL context on every run, so the new
kit's ``client_context.tenseal`` would not match the one every other site and the server hold.
:func:`add_participants` therefore copies the federation's existing contexts into every kit of
the new ``prod_NN`` and signs their ``startup/`` and ``local/`` again with the root CA's key (as
``SignatureBuilder`` did), and checks that no existing certificate changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from nvflare.lighter.utils import load_private_key, sign_folders

from fedhealth_tools.provision.errors import ProvisionError
from fedhealth_tools.provision.kits import fingerprint, run_provision

CLIENT_CONTEXT = "client_context.tenseal"
SERVER_CONTEXT = "server_context.tenseal"
SIGNATURE = "signature.json"


def _latest_prod(project_dir: Path) -> Path:
    prods = sorted(project_dir.glob("prod_*"))
    if not prods:
        raise ProvisionError(f"no earlier provisioning in {project_dir}: provision the project first")
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
    raise ProvisionError(f"{prod} holds no server kit")


def add_participants(
    project_file: Path, workspace: Path, names: list[str], *, renew: bool = False
) -> dict[str, Path]:
    """Provision ``names`` (already added to ``project_file``) into the existing ``workspace``.

    Args:
        project_file: the project file with the new participants added (nothing else changed).
        workspace: the folder of the earlier provisioning (holds ``<project>/state``).
        names: the participants to hand out kits to.
        renew: ``names`` are existing participants whose certificate is to be renewed: their
            entries are removed from the state (``cert.json.bak`` keeps the old file) so that they
            get a new key and certificate from the same root CA; nobody else's changes.

    Returns:
        name -> path of the new kit.

    Raises:
        ProvisionError: no earlier provisioning, a name that already had a kit or is not in the project,
            or an existing certificate that changed.
    """
    workspace = Path(workspace).resolve()
    project = yaml.safe_load(Path(project_file).read_text())
    project_dir = workspace / project["name"]
    previous = _latest_prod(project_dir)
    before = _certificates(previous)
    listed = {p["name"] for p in project.get("participants", [])}
    conflict = sorted(set(names) - set(before)) if renew else sorted(set(names) & set(before))
    missing = sorted(set(names) - listed)
    if conflict or missing:
        what = "never provisioned" if renew else "already provisioned"
        raise ProvisionError(
            f"cannot {'renew' if renew else 'add'} {names}: {what} {conflict}, "
            f"not in {project_file}: {missing}"
        )
    state_file = project_dir / "state" / "cert.json"
    if renew:
        shutil.copyfile(state_file, state_file.with_suffix(".json.bak"))
        state = json.loads(state_file.read_text())
        state_file.write_text(json.dumps({k: v for k, v in state.items() if k not in names}))
    new = run_provision(project_file, workspace, server_host=_server_name(previous))
    after = _certificates(new)
    changed = sorted(n for n, fp in after.items() if n in before and before[n] != fp and n not in names)
    if changed:
        raise ProvisionError(
            f"re-provisioning changed the certificates of {changed}; do not distribute {new}"
        )
    stale = sorted(n for n in names if renew and after.get(n) == before.get(n))
    if stale:
        raise ProvisionError(f"the certificates of {stale} were not renewed")
    state = json.loads(state_file.read_text())
    root_key = load_private_key(state["root_pri_key"])
    _keep_he_contexts(previous, new, root_key)
    kits = {name: new / name for name in names}
    return kits


def _keep_he_contexts(previous: Path, new: Path, root_key) -> None:
    """Give every kit in ``new`` the federation's HE contexts from ``previous`` and sign it again.

    All of ``new`` is fixed, not only the new kits, so that ``new`` is a consistent snapshot for
    the next addition (FLARE's re-provisioning made fresh contexts for every kit).
    """
    for context in (CLIENT_CONTEXT, SERVER_CONTEXT):
        source = next(previous.glob(f"*/startup/{context}"), None)
        if source is None:
            continue
        for target in new.glob(f"*/startup/{context}"):
            shutil.copyfile(source, target)
            kit = target.parent.parent
            for folder in (kit / "startup", kit / "local"):
                (folder / SIGNATURE).unlink(missing_ok=True)
                sign_folders(str(folder), root_key, signature_file=SIGNATURE)
