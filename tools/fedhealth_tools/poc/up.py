"""``fedhealth up``: the POC federation, kept running for the admin console or the FLARE API.

Provisions the workspace once (a later ``up`` reuses it; ``--fresh`` starts clean), points each
site at its data (``--data SITE=PATH``, else the kit writes that hospital's heart export and
``mapping.json``, as the heart jobs read them), starts the server and the sites, prints how to open
the admin console, and waits. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import time
from pathlib import Path

from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.workspace import (
    PocError,
    PocLayout,
    prepare_workspace,
    read_project,
    set_site_data,
    write_heart_data,
)


def parse_data_options(options: list[str]) -> dict[str, Path]:
    """``["site-1=/path/a", ...]`` as ``{"site-1": Path("/path/a")}``.

    Raises:
        PocError: an option without ``=``, with an empty side, or a site named twice.
    """
    data: dict[str, Path] = {}
    for option in options:
        site, sep, path = option.partition("=")
        if not sep or not site.strip() or not path.strip():
            raise PocError(f"--data {option!r}: expected SITE=PATH, e.g. --data site-1=/data/site-1")
        if site.strip() in data:
            raise PocError(f"--data names {site.strip()} twice")
        data[site.strip()] = Path(path.strip())
    return data


def prepare_sites(
    project_file: Path, workspace: Path, *, data: dict[str, Path] | None = None, fresh: bool = False
) -> PocLayout:
    """The workspace of ``up``: provisioned or reused, each site pointed at its data.

    Raises:
        PocError: a ``data`` site that is not in the project (checked before anything is
            provisioned), a folder that does not exist, or a workspace that cannot be reused.
    """
    data = dict(data or {})
    sites = read_project(project_file)["sites"]
    unknown = sorted(set(data) - set(sites))
    if unknown:
        raise PocError(f"--data names {', '.join(unknown)}: not sites of {project_file} ({', '.join(sites)})")
    layout = prepare_workspace(project_file, Path(workspace) / "poc", fresh=fresh)
    placed = set_site_data(layout, data)
    for site, folder in placed.items():
        print(f"{site}: data_root {folder}")
    write_heart_data(layout, skip_own_data=True)
    return layout


def run_up(
    *, project_file: Path, workspace: Path, data: dict[str, Path] | None = None, fresh: bool = False
) -> None:
    """Start the federation and block until interrupted."""
    layout = prepare_sites(project_file, workspace, data=data, fresh=fresh)
    with PocProcesses(layout, Path(workspace) / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
        console = layout.kit(layout.admin) / "startup" / "fl_admin.sh"
        print(f"federation up on 127.0.0.1:{layout.port}: server + {', '.join(layout.sites)}")
        print(f"admin console (user {layout.admin}):  bash {console}")
        print("  then e.g.:  submit_job <absolute path of jobs/heart_fedprox>   then   list_jobs")
        print("  a job's status and failed sites:  fedhealth status JOB_ID")
        print("  the report of a downloaded job:   fedhealth report <downloaded job folder>")
        print("Ctrl-C stops every process.")
        while True:
            procs.check_alive()
            time.sleep(2.0)
