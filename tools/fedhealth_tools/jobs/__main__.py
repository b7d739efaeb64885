"""``python -m fedhealth_tools.jobs --write | --check``: the job folders from ``job_specs/``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedhealth_tools.jobs.merge import SpecError
from fedhealth_tools.jobs.spec import JOBS_DIR, SPECS_DIR, WRITE_COMMAND, check, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedhealth_tools.jobs", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--write", action="store_true", help="write every job's meta.json and app/config/*.json"
    )
    mode.add_argument("--check", action="store_true", help="exit 1 if a committed job differs from its spec")
    parser.add_argument("--specs", type=Path, default=SPECS_DIR, help="the family specs (default: job_specs)")
    parser.add_argument("--jobs", type=Path, default=JOBS_DIR, help="the job folders (default: jobs)")
    args = parser.parse_args(argv)
    try:
        if args.write:
            written = write(args.specs, args.jobs)
            for path in written:
                print(f"wrote {path}")
            print(f"{len(written)} file(s) changed")
            return 0
        problems = check(args.specs, args.jobs)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    if problems:
        print(f"The job folders are out of date with {args.specs}; run `{WRITE_COMMAND}`.")
        return 1
    print("The job folders match their specs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
