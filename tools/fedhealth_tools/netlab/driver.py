"""The project admin's side of a lab run, started inside the admin's network namespace.

Logs in to the server at its lab address with the admin's startup kit, waits for the sites, submits
the job, follows it and downloads the result. Each line it prints after :data:`MARK` is one JSON
object: ``{"progress": {...}}`` while the job runs (the lab reacts to rounds, e.g. cuts a link),
then ``{"status": ..., "job_id": ..., "result": <folder>}`` or ``{"error": ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fedhealth_tools.poc.admin import AdminClient
from fedhealth_tools.poc.workspace import PocError, PocLayout

MARK = "@netlab "  # FLARE's API prints to standard output too: the lab reads only the marked lines


def _emit(**fields: object) -> None:
    print(MARK + json.dumps(fields, default=str), flush=True)


def drive(
    layout: PocLayout, job_dir: Path, workspace: Path, *, timeout: float, connect_timeout: float
) -> int:
    """Run one job as the project admin; prints progress and the outcome as JSON lines."""
    started = time.monotonic()
    try:
        with AdminClient(layout, connect_timeout=connect_timeout) as admin:
            admin.wait_for_sites(layout.sites, timeout=connect_timeout, check=lambda: None)
            _emit(connected=sorted(layout.sites), seconds=round(time.monotonic() - started, 2))
            job_id = admin.submit(job_dir, workspace / "submit")
            _emit(submitted=job_id)
            status = admin.follow(
                job_id, on_progress=lambda p: _emit(progress=p), check=lambda: None, timeout=timeout
            )
            result = admin.download(job_id, workspace / "downloads")
            _emit(status=status, job_id=job_id, result=str(result))
    except PocError as exc:
        _emit(error=str(exc))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", required=True, help="JSON: root, prod_dir, server, admin, sites, port")
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    raw = json.loads(args.layout)
    layout = PocLayout(
        Path(raw["root"]),
        Path(raw["prod_dir"]),
        raw["server"],
        raw["admin"],
        tuple(raw["sites"]),
        int(raw["port"]),
    )
    return drive(layout, args.job, args.workspace, timeout=args.timeout, connect_timeout=args.connect_timeout)


if __name__ == "__main__":
    sys.exit(main())
