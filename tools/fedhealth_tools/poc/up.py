"""``fedhealth up``: the POC federation, kept running for the admin console or the FLARE API.

Provisions the workspace, gives each hospital its own data, starts the server and the four sites,
prints how to open the admin console, and waits. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import time
from pathlib import Path

from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.processes import PocProcesses
from fedhealth_tools.poc.workspace import prepare_workspace, write_heart_data


def run_up(*, project_file: Path, workspace: Path) -> None:
    """Start the federation and block until interrupted."""
    layout = prepare_workspace(project_file, Path(workspace) / "poc")
    write_heart_data(layout)
    with PocProcesses(layout, Path(workspace) / "logs") as procs:
        procs.start()
        with AdminClient(layout) as admin:
            admin.wait_for_sites(layout.sites, timeout=90, check=procs.check_alive)
        console = layout.kit(layout.admin) / "startup" / "fl_admin.sh"
        print(f"federation up on 127.0.0.1:{layout.port}: server + {', '.join(layout.sites)}")
        print(f"admin console (user {layout.admin}):  bash {console}")
        print("  then e.g.:  submit_job <absolute path of jobs/heart_fedprox>   then   list_jobs")
        print("Ctrl-C stops every process.")
        while True:
            procs.check_alive()
            time.sleep(2.0)
