"""``fedhealth netlab``: run one job with every host in its own network namespace over shaped links."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedhealth_tools.netlab.profiles import DEFAULT_CONFIG, NetlabConfigError
from fedhealth_tools.netlab.topology import NetlabError, namespaces_available
from fedhealth_tools.poc.workspace import PocError
from fedhealth_tools.provision.errors import ProvisionError


def add_netlab_arguments(parser: argparse.ArgumentParser, root: Path) -> None:
    parser.add_argument("--job", type=Path, required=True, help="the job folder, e.g. jobs/heart_fedavg")
    parser.add_argument(
        "--lab", default="consortium", help="a lab of the config (fast, wan, rural, consortium)"
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="link profiles and labs (JSON)")
    parser.add_argument("--project", type=Path, default=root / "project.yml", help="the production project")
    parser.add_argument("--workspace", type=Path, default=root / "workspace" / "netlab")
    parser.add_argument("--results", type=Path, default=root / "results" / "netlab", help="the job's report")
    parser.add_argument(
        "--cut", default=None, metavar="SITE:ROUND:SECONDS", help="cut a site's link when ROUND starts"
    )
    parser.add_argument("--probe", action="store_true", help="measure each link's RTT and goodput first")
    parser.add_argument("--timeout", type=float, default=900.0)


def _cut(text: str | None):
    from fedhealth_tools.netlab.lab import LinkCut

    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 3:
        raise NetlabError(f"--cut {text!r}: expected SITE:ROUND:SECONDS, e.g. va_long_beach:2:60")
    return LinkCut(parts[0], int(parts[1]), float(parts[2]))


def run_netlab_command(args: argparse.Namespace) -> int:
    from fedhealth.reports.job_result import report_job_result, summary_text
    from fedhealth_tools.netlab.lab import run_in_lab

    why = namespaces_available()
    if why is not None:
        print(f"fedhealth netlab cannot run here: {why}", file=sys.stderr)
        return 1
    try:
        run = run_in_lab(
            args.job,
            workspace=args.workspace,
            project_file=args.project,
            lab=args.lab,
            config=args.config,
            cut=_cut(args.cut),
            timeout=args.timeout,
            probe=args.probe,
        )
    except (NetlabError, NetlabConfigError, PocError, ProvisionError) as exc:
        print(f"fedhealth netlab failed: {exc}", file=sys.stderr)
        return 1
    report, paths = report_job_result(run.result, args.results, seconds=run.seconds)
    print(summary_text(report))
    print(f"status {run.status} in {run.seconds:.0f} s; links: {json.dumps(run.profiles)}")
    for site, row in run.probes.items():
        print(
            f"  {site}: {row['profile']}, rtt {row['rtt_ms']:.1f} ms, upload {row['goodput_mbit']:.1f} Mbit/s"
        )
    for site, link in run.links.items():
        up, down = link["up"], link["down"]
        print(f"  {site}: sent {up['bytes']} B ({up['dropped']} frames lost), received {down['bytes']} B")
    for cut in run.cuts:
        print(f"  link of {cut['site']} cut at round {cut['round']} for {cut['restored'] - cut['cut']:.0f} s")
    print("report: " + ", ".join(str(p) for p in paths))
    return 0 if run.status == "FINISHED:COMPLETED" else 1
