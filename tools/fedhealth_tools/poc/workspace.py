"""A POC workspace inside the checkout: startup kits from ``project.yml`` and each site's data.

``nvflare poc prepare -i project.yml`` runs the project's builders (certificates, fedhealth's
allow-list and loopback builders). Then each hospital's own rows are written into that site's own
``data/`` folder, and the site's ``local/fedhealth_site.json`` says where its data lives.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from fedhealth.constants import SITE_CONFIG_FILE, SITE_DATA_ROOT_KEY
from fedhealth.data.site_data import write_site
from fedhealth.onboarding.preflight import nvflare_bin
from fedhealth_tools.data.heart_source import load_heart_sites


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


def prepare_workspace(project_file: Path, root: Path) -> PocLayout:
    """Provision a fresh POC workspace at ``root`` (replacing an old one)."""
    info = read_project(project_file)
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "NVFLARE_POC_WORKSPACE": str(root)}
    cmd = [nvflare_bin(), "poc", "prepare", "-i", str(Path(project_file).resolve()), "--force"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    prod_dir = root / info["name"] / "prod_00"
    if proc.returncode != 0 or not prod_dir.is_dir():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
        raise PocError("nvflare poc prepare failed:\n  " + "\n  ".join(tail))
    return PocLayout(root, prod_dir, info["server"], info["admin"], info["sites"], info["port"])


def update_site_settings(kit: Path, **changes: object) -> None:
    """Set keys in a site kit's own ``local/fedhealth_site.json``, keeping the others."""
    path = Path(kit) / "local" / SITE_CONFIG_FILE
    settings = json.loads(path.read_text()) if path.is_file() else {}
    settings.update(changes)
    path.write_text(json.dumps(settings, indent=2))


def write_heart_data(layout: PocLayout, csv_path: Path | None = None) -> dict[str, tuple[int, int]]:
    """Give each hospital site only its own rows; returns ``{site: (n_train, n_test)}``."""
    splits = load_heart_sites(csv_path)
    unknown = [s for s in layout.sites if s not in splits]
    if unknown:
        raise PocError(f"project sites {unknown} are not hospitals of the heart data {sorted(splits)}")
    sizes = {}
    for site in layout.sites:
        kit = layout.kit(site)
        write_site(kit / "data", splits[site].train, splits[site].test)
        update_site_settings(kit, **{SITE_DATA_ROOT_KEY: "data"})
        sizes[site] = (len(splits[site].train), len(splits[site].test))
    return sizes
