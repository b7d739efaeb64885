"""``fedhealth-site``: what a hospital's IT runs on its own host, with only the site runtime installed.

- ``fedhealth-site preflight <kit>``: signatures of the startup kit, file permissions, FLARE's
  preflight check (:mod:`fedhealth.onboarding.preflight`);
- ``fedhealth-site validate-site ...``: judge a global model on the site's own labelled data
  (:mod:`fedhealth.onboarding.validate_site`);
- ``fedhealth-site check-table ...``: does the site's export fit a tabular job's data dictionary?
  (:mod:`fedhealth.onboarding.check_table`; no model needed).

The consortium's tools (provisioning, POC, benchmarks) are the separate ``fedhealth-tools``
distribution; its ``fedhealth`` command offers the same subcommands through this module.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_preflight_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kits", type=Path, nargs="+", help="startup kit folders to check")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for FLARE's check of one kit")
    parser.add_argument(
        "--user",
        help="the user FLARE runs as, for the permission warnings (default: the user running this check)",
    )


def run_preflight_command(args: argparse.Namespace) -> int:
    from fedhealth.onboarding.permissions import Identity
    from fedhealth.onboarding.preflight import check_kit, summary

    try:
        user = Identity.named(args.user) if getattr(args, "user", None) else None
    except ValueError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    checks = [check_kit(kit, timeout=args.timeout, user=user) for kit in args.kits]
    print(summary(checks))
    return 0 if all(c.ok for c in checks) else 1


def add_site_commands(sub: argparse._SubParsersAction) -> None:
    """The site operator's subcommands, added to ``fedhealth-site`` and to the tools' ``fedhealth``."""
    from fedhealth.onboarding.check_table import add_arguments as add_check_table_arguments
    from fedhealth.onboarding.validate_site import add_arguments as add_validate_arguments

    validate = sub.add_parser(
        "validate-site",
        help="judge a global model on a new hospital's labelled data; fine-tune if it falls short",
    )
    add_validate_arguments(validate)
    check = sub.add_parser(
        "check-table",
        help="does this hospital's export fit a tabular job's data dictionary? (report and counts, no model)",
    )
    add_check_table_arguments(check)
    preflight = sub.add_parser(
        "preflight", help="check startup kits (signatures, permissions, FLARE preflight) before deployment"
    )
    add_preflight_arguments(preflight)


def run_site_command(args: argparse.Namespace) -> int | None:
    """Run a site subcommand; ``None`` when ``args.command`` is not one."""
    if args.command == "validate-site":
        from fedhealth.onboarding.validate_site import run as run_validate_site

        return run_validate_site(args)
    if args.command == "check-table":
        from fedhealth.onboarding.check_table import run as run_check_table

        return run_check_table(args)
    if args.command == "preflight":
        return run_preflight_command(args)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fedhealth-site", description=__doc__)
    add_site_commands(parser.add_subparsers(dest="command", required=True))
    return int(run_site_command(parser.parse_args(argv)) or 0)


if __name__ == "__main__":
    sys.exit(main())
