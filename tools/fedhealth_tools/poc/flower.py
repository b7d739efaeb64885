"""A Flower app under FLARE in POC: the server's installed app, the sites' allow-lists, the interpreter.

What a Flower job (``jobs/heart_flower``) needs beyond a plain job, done the way a consortium would:

- the server operator installs the app folder (a ``pyproject.toml`` naming the kit's installed
  module, :data:`HEART_APP`) at ``<server>/local/custom/<name>/``, where FLARE's
  ``FlowerController(flower_app_path="local/custom/<name>")`` finds it (:func:`install_server_app`);
- each hospital lists the ClientApps it runs in its own ``local/fedhealth_site.json``
  (``flower_apps``, :mod:`fedhealth.flower.fab_policy`; :func:`allow_clientapps`);
- every FLARE process runs the Python environment that has ``flwr`` (:data:`FLOWER_PYTHON`, given
  to :class:`~fedhealth_tools.poc.processes.PocProcesses` as ``python``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fedhealth.flower.fab_policy import CLIENTAPPS_KEY, FAB_SHA256_KEY, SETTINGS_KEY
from fedhealth_tools.poc.workspace import PocError, PocLayout, update_site_settings

REPO = Path(__file__).resolve().parents[3]
FLOWER_PYTHON = REPO / ".venv-flower" / "bin" / "python"
HEART_APP = REPO / "custom" / "fedhealth" / "flower" / "apps" / "heart_flower"
HEART_CLIENTAPP = "fedhealth.flower.heart_flower:client_app"
SERVER_APPS = Path("local") / "custom"  # FLARE's flower_app_path must start with local/custom/


def install_server_app(layout: PocLayout, app: Path = HEART_APP, *, name: str | None = None) -> Path:
    """Copy the Flower app folder ``app`` to the server's ``local/custom/<name>``; returns the copy.

    Raises:
        PocError: ``app`` has no ``pyproject.toml``.
    """
    app = Path(app)
    if not (app / "pyproject.toml").is_file():
        raise PocError(f"{app} is not a Flower app folder (no pyproject.toml)")
    dest = layout.kit(layout.server) / SERVER_APPS / (name or app.name)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(app, dest)
    return dest


def allow_clientapps(
    layout: PocLayout,
    clientapps: list[str],
    *,
    sites: tuple[str, ...] | None = None,
    fab_sha256: list[str] | None = None,
) -> None:
    """Write each site's ``flower_apps`` setting (the ClientApps it runs, optionally pinned FAB hashes)."""
    setting = {CLIENTAPPS_KEY: list(clientapps), FAB_SHA256_KEY: list(fab_sha256 or [])}
    for site in sites if sites is not None else layout.sites:
        update_site_settings(layout.kit(site), **{SETTINGS_KEY: setting})


def flower_python() -> Path:
    """The ``.venv-flower`` interpreter (``make flower-env``).

    Raises:
        PocError: it is not there.
    """
    if not FLOWER_PYTHON.is_file():
        raise PocError(
            f"no Flower environment at {FLOWER_PYTHON.parent.parent}: run `make .venv-flower/.installed`"
        )
    return FLOWER_PYTHON
