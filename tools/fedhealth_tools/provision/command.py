"""The ``fedhealth provision`` subcommand (arguments and entry point)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedhealth_tools.provision.errors import ProvisionError

PRODUCTION_PROJECT = Path("project.yml")


def add_provision_arguments(parser: argparse.ArgumentParser, root: Path) -> None:
    parser.add_argument(
        "-p", "--project", type=Path, default=root / PRODUCTION_PROJECT, help="FLARE project file"
    )
    parser.add_argument(
        "-w",
        "--workspace",
        type=Path,
        default=root / "workspace" / "provision",
        help="where the kits go (git-ignored; each run adds a new prod_NN)",
    )
    parser.add_argument(
        "--server-host", default=None, help="the server's host name (overrides the project file)"
    )
    parser.add_argument(
        "--renew",
        nargs="+",
        metavar="NAME",
        default=None,
        help="new certificates and kits for these existing participants; nobody else's changes",
    )
    parser.add_argument(
        "--add",
        nargs="+",
        metavar="NAME",
        default=None,
        help="kits only for these participants, newly added to the project file; every existing "
        "certificate, key and HE context is kept (re-uses the workspace's provisioning state)",
    )


def run_provision_command(args: argparse.Namespace) -> int:
    from fedhealth_tools.provision.add_site import add_participants
    from fedhealth_tools.provision.kits import read_kits, report, run_provision

    try:
        if args.add or args.renew:
            names = list(args.add or args.renew)
            added = add_participants(args.project, args.workspace, names, renew=bool(args.renew))
            prod_dir = next(iter(added.values())).parent
            print(report(prod_dir, [k for k in read_kits(prod_dir) if k.name in added]))
            print(
                "\nOnly the kit(s) above are new: no other certificate changed, so the\n"
                f"running server and sites keep their kits. Send {', '.join(added)} its kit; it connects\n"
                "to the server when it starts."
            )
            return 0
        prod_dir = run_provision(args.project, args.workspace, server_host=args.server_host)
    except ProvisionError as exc:
        print(f"fedhealth provision failed: {exc}", file=sys.stderr)
        return 1
    print(report(prod_dir, read_kits(prod_dir)))
    return 0
