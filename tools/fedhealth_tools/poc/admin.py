"""The project admin's FLARE API session: wait for sites, submit a job, follow it, download it.

The session is always closed (a FLARE API script that does not close its session hangs on error).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from nvflare.fuel.flare_api.flare_api import new_secure_session

from fedhealth.constants import STATS_GROUP
from fedhealth_tools.poc.workspace import PocError, PocLayout

FINISHED = "FINISHED"
RUNNING = "RUNNING"


class AdminClient:
    """A secure FLARE API session as the project admin of a POC workspace."""

    def __init__(self, layout: PocLayout, *, connect_timeout: float = 60.0) -> None:
        self.layout = layout
        self.connect_timeout = connect_timeout
        self.session = None

    def __enter__(self) -> AdminClient:
        kit = self.layout.kit(self.layout.admin)
        try:
            self.session = new_secure_session(self.layout.admin, str(kit), timeout=self.connect_timeout)
        except Exception as exc:  # FLARE raises several types here; say what failed
            raise PocError(f"admin {self.layout.admin} could not log in to the server: {exc}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self.session is not None:
            try:
                self.session.close()
            finally:
                self.session = None

    def wait_for_sites(self, sites: tuple[str, ...], *, timeout: float, check: Callable[[], None]) -> None:
        """Block until every site is connected to the server."""
        deadline = time.monotonic() + timeout
        while True:
            check()
            connected = {c.name for c in self.session.get_connected_client_list()}
            missing = sorted(set(sites) - connected)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise PocError(f"sites not connected after {timeout:.0f} s: {', '.join(missing)}")
            time.sleep(1.0)

    def submit(self, job_dir: Path, staging: Path) -> str:
        """Submit a copy of ``job_dir`` (FLARE writes signature files into the folder it submits)."""
        copy = Path(staging) / Path(job_dir).name
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(job_dir, copy, ignore=shutil.ignore_patterns(".__nvfl_*"))
        return self.session.submit_job(str(copy.resolve()))

    def status(self, job_id: str) -> str:
        return str(self.session.get_job_meta(job_id).get("status", "UNKNOWN"))

    def progress(self, job_id: str) -> dict:
        """fedhealth's live progress from the server (round, sites reported, metric, failures)."""
        try:
            stats = self.session.show_stats(job_id, "server")
        except Exception:  # the job may be between states; progress is best effort
            return {}
        server = stats.get("server", {}) if isinstance(stats, dict) else {}
        return server.get(STATS_GROUP, {}) if isinstance(server, dict) else {}

    def follow(
        self,
        job_id: str,
        *,
        on_progress: Callable[[dict], None],
        check: Callable[[], None],
        timeout: float,
        interval: float = 1.0,
    ) -> str:
        """Poll until the job finishes; returns its final status."""
        deadline = time.monotonic() + timeout
        while True:
            check()
            status = self.status(job_id)
            if status.startswith(FINISHED):
                return status
            if status == RUNNING:  # before that the job's server process cannot answer show_stats
                on_progress(self.progress(job_id))
            if time.monotonic() > deadline:
                self.session.abort_job(job_id)
                raise PocError(
                    f"job {job_id} did not finish within {timeout:.0f} s (status {status}); aborted"
                )
            time.sleep(interval)

    def download(self, job_id: str, destination: Path) -> Path:
        """Download the job's result (the server's run folder) into ``destination``."""
        location = self.session.download_job_result(job_id, str(destination))
        if not location:
            raise PocError(f"job {job_id}: the server returned no result to download")
        return Path(location)

    def error_logs(self, job_id: str) -> str:
        """Where the sites' error logs of a failed job were downloaded, for the user to read."""
        try:
            return self.session.download_job_components(job_id) or ""
        except Exception:
            return ""
