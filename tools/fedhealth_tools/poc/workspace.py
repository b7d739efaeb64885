"""A POC workspace inside the checkout: startup kits from ``project.yml`` and each site's data.

``nvflare poc prepare -i project.yml`` runs the project's builders (certificates, fedhealth's
allow-list and loopback builders). Then each hospital's own export (in its own dialect, with the
``mapping.json`` that reads it) is written into that site's own ``data/`` folder, and the site's
``local/fedhealth_site.json`` says where its data lives.

A workspace is provisioned once: a later ``fedhealth up`` or ``demo`` reuses the one made from the
same project file (its sites' settings and its job results stay), refuses one made otherwise, and
``fresh=True`` (``--fresh``) deletes it and provisions a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from fedhealth.constants import HEART_DATASET_DIR, SITE_CONFIG_FILE, SITE_DATA_ROOT_KEY
from fedhealth.data.site_data import write_site
from fedhealth.onboarding.preflight import nvflare_bin
from fedhealth_tools.data.heart_source import load_heart_sites

PROJECT_STAMP_FILE = "fedhealth_project.json"  # in the POC root: which project file made the kits
LOCAL_DATA = "data"  # the data_root of the rows the kit writes into a site (relative to its kit)


class PocError(RuntimeError):
    """A POC step failed; the message says which and why."""


@dataclass(frozen=True)
class PocLayout:
    """Where the provisioned kits are."""

    root: Path
    prod_dir: Path
    server: str
    admin: str
    sites: tuple[str, ...]
    port: int

    def kit(self, name: str) -> Path:
        return self.prod_dir / name


def read_project(project_file: Path) -> dict:
    """Names and port from a FLARE project file."""
    project = yaml.safe_load(Path(project_file).read_text())
    parts = project.get("participants", [])
    servers = [p for p in parts if p.get("type") == "server"]
    admins = [p for p in parts if p.get("type") == "admin" and p.get("role") == "project_admin"]
    if len(servers) != 1 or not admins:
        raise PocError(f"{project_file}: needs exactly one server and a project_admin")
    return {
        "name": project["name"],
        "server": servers[0]["name"],
        "port": int(servers[0].get("fed_learn_port", 8002)),
        "admin": admins[0]["name"],
        "sites": tuple(p["name"] for p in parts if p.get("type") == "client"),
    }


def _project_digest(project_file: Path) -> str:
    return hashlib.sha256(Path(project_file).read_bytes()).hexdigest()


def prepare_workspace(project_file: Path, root: Path, *, fresh: bool = False) -> PocLayout:
    """The POC workspace at ``root``: reused when made from the same project file, else provisioned.

    Args:
        project_file: the FLARE project file (participants, ports, builders).
        root: the POC workspace folder.
        fresh: delete ``root`` first and provision anew (``--fresh``).

    Raises:
        PocError: ``root`` holds something else than a workspace made from ``project_file`` (the
            message says how to start clean), or provisioning failed.
    """
    info = read_project(project_file)
    root = Path(root).resolve()
    prod_dir = root / info["name"] / "prod_00"
    layout = PocLayout(root, prod_dir, info["server"], info["admin"], info["sites"], info["port"])
    if fresh:
        shutil.rmtree(root, ignore_errors=True)
    elif root.is_dir() and any(root.iterdir()):
        _check_reusable(root, project_file, layout)
        return layout
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NVFLARE_POC_WORKSPACE": str(root)}
    cmd = [nvflare_bin(), "poc", "prepare", "-i", str(Path(project_file).resolve()), "--force"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not prod_dir.is_dir():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
        raise PocError("nvflare poc prepare failed:\n  " + "\n  ".join(tail))
    stamp = {"project_file": str(Path(project_file).resolve()), "sha256": _project_digest(project_file)}
    (root / PROJECT_STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
    return layout


def _check_reusable(root: Path, project_file: Path, layout: PocLayout) -> None:
    """Raise unless ``root`` is a complete workspace provisioned from this very project file."""
    stamp_path = root / PROJECT_STAMP_FILE
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    kits = [layout.server, layout.admin, *layout.sites]
    missing = [name for name in kits if not (layout.kit(name) / "startup").is_dir()]
    if stamp.get("sha256") == _project_digest(project_file) and not missing:
        return
    if not stamp:
        what = "a folder fedhealth did not provision (or provisioned before it recorded the project file)"
    elif missing:
        what = f"a POC workspace without the kits of {', '.join(missing)}"
    else:
        what = f"a POC workspace made from another project file ({stamp.get('project_file')})"
    raise PocError(
        f"{root} holds {what}. Provisioning again would replace its sites' settings "
        f"(local/{SITE_CONFIG_FILE}: data location, limits) and the job results kept in it. "
        "To start clean, run again with --fresh (deletes that folder), or give another --workspace."
    )


def update_site_settings(kit: Path, **changes: object) -> None:
    """Set keys in a site kit's own ``local/fedhealth_site.json``, keeping the others."""
    path = Path(kit) / "local" / SITE_CONFIG_FILE
    settings = json.loads(path.read_text()) if path.is_file() else {}
    settings.update(changes)
    path.write_text(json.dumps(settings, indent=2))


def site_data_root(kit: Path) -> str | None:
    """The ``data_root`` a site kit's own settings name, if any."""
    path = Path(kit) / "local" / SITE_CONFIG_FILE
    return json.loads(path.read_text()).get(SITE_DATA_ROOT_KEY) if path.is_file() else None


def set_site_data(layout: PocLayout, data: dict[str, Path]) -> dict[str, Path]:
    """Point sites at their own data folders (``fedhealth up --data SITE=PATH``).

    Writes each folder, made absolute, as the site's ``data_root`` in its own
    ``local/fedhealth_site.json``; returns ``{site: folder}``.

    Raises:
        PocError: a site that is not in the project, or a folder that does not exist.
    """
    unknown = sorted(set(data) - set(layout.sites))
    if unknown:
        raise PocError(
            f"--data names {', '.join(unknown)}: not sites of this project ({', '.join(layout.sites)})"
        )
    placed = {}
    for site, folder in data.items():
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise PocError(f"--data {site}={folder}: no such folder")
        update_site_settings(layout.kit(site), **{SITE_DATA_ROOT_KEY: str(folder)})
        placed[site] = folder
    return placed


def sites_with_own_data(layout: PocLayout, *, needs: str, allow: bool = False) -> dict[str, str]:
    """The sites whose settings name a data folder of their own, ``{site: data_root}``.

    Args:
        layout: the provisioned workspace.
        needs: what the demo would write into each kit (for the message).
        allow: return such sites (the caller leaves them as they are) instead of refusing.

    Raises:
        PocError: such a site exists and ``allow`` is false; the message names the sites.
    """
    own = {s: root for s in layout.sites if (root := site_data_root(layout.kit(s))) not in (None, LOCAL_DATA)}
    if own and not allow:
        named = ", ".join(f"{s} ({root})" for s, root in own.items())
        raise PocError(
            f"sites point at their own data: {named}; the demo writes {needs} into each kit. "
            "Run the job with fedhealth up and the admin console, or start clean with --fresh "
            f"(sites' {SITE_DATA_ROOT_KEY} is their own setting)."
        )
    return own


def write_heart_data(layout: PocLayout, *, skip_own_data: bool = False) -> dict[str, tuple[int, int]]:
    """Give each hospital site the data the shipped heart jobs read; returns ``{site: (n_train, n_test)}``.

    The heart jobs train task ``tabular`` on dataset ``heart_disease``: each site gets its hospital's
    export in its own dialect and the ``mapping.json`` that reads it
    (:func:`fedhealth_tools.poc.tabular_data.write_tabular_data`).

    Args:
        layout: the provisioned workspace.
        skip_own_data: leave a site whose settings name another data folder as it is (``up``);
            without it such a site is an error (the demo's heart job needs the kit's export there).

    Raises:
        PocError: a project site that is not one of the four hospitals, or (without
            ``skip_own_data``) a site that points at its own data.
    """
    from fedhealth_tools.poc.tabular_data import write_tabular_data  # it builds on this module

    return write_tabular_data(layout, HEART_DATASET_DIR, skip_own_data=skip_own_data)


def write_heart_rows(
    layout: PocLayout, csv_path: Path | None = None, *, skip_own_data: bool = False
) -> dict[str, tuple[int, int]]:
    """Give each hospital site only its own FLamby rows, as task ``heart`` reads them.

    Returns ``{site: (n_train, n_test)}``. No shipped job trains task ``heart`` any more (the heart
    jobs read :func:`write_heart_data`'s exports); the demo places these rows for a job that does.

    Args:
        layout: the provisioned workspace.
        csv_path: the heart data (default: the bundled file).
        skip_own_data: leave a site whose settings name another data folder as it is; without it
            such a site is an error.

    Raises:
        PocError: a project site that is not a hospital of the heart data, or (without
            ``skip_own_data``) a site that points at its own data.
    """
    splits = load_heart_sites(csv_path)
    unknown = [s for s in layout.sites if s not in splits]
    if unknown:
        raise PocError(f"project sites {unknown} are not hospitals of the heart data {sorted(splits)}")
    own = sites_with_own_data(layout, needs="the kit's heart rows", allow=skip_own_data)
    sizes = {}
    for site in layout.sites:
        if site in own:
            continue
        kit = layout.kit(site)
        write_site(kit / LOCAL_DATA, splits[site].train, splits[site].test)
        update_site_settings(kit, **{SITE_DATA_ROOT_KEY: LOCAL_DATA})
        sizes[site] = (len(splits[site].train), len(splits[site].test))
    return sizes
