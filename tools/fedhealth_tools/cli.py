"""The ``fedhealth`` command line of the tools (POC, provisioning, benchmarks) and the site commands."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from fedhealth.onboarding.cli import add_site_commands, run_site_command
from fedhealth_tools.export_model import add_export_arguments, run_export
from fedhealth_tools.imaging.convert_cli import FORMATTER as CONVERT_FORMATTER
from fedhealth_tools.imaging.convert_cli import add_arguments as add_convert_arguments
from fedhealth_tools.imaging.convert_cli import run as run_convert
from fedhealth_tools.netlab.cli import add_netlab_arguments, run_netlab_command
from fedhealth_tools.poc.task_data import DEMO_IMAGES
from fedhealth_tools.poc.workspace import PocError
from fedhealth_tools.provision.command import add_provision_arguments, run_provision_command

FRESH_HELP = "delete the existing POC workspace (sites' settings, job results) and provision a new one"


def _repo_root() -> Path:
    """The checkout that holds ``jobs/`` and ``project.yml`` (the working directory, or above)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "jobs").is_dir() and (folder / "project.yml").is_file():
            return folder
    return here


def _parser() -> argparse.ArgumentParser:
    root = _repo_root()
    parser = argparse.ArgumentParser(prog="fedhealth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="run a shipped job on four hospitals in FLARE POC mode, end to end, with its task's data"
    )
    demo.add_argument("--job", type=Path, default=root / "jobs" / "heart_fedprox")
    demo.add_argument("--project", type=Path, default=root / "provision" / "poc.yml")
    demo.add_argument("--workspace", type=Path, default=root / "workspace")
    demo.add_argument("--results", type=Path, default=root / "results" / "demo")
    demo.add_argument("--timeout", type=float, default=900.0, help="seconds the job may run")
    demo.add_argument("--fresh", action="store_true", help=FRESH_HELP)
    demo.add_argument(
        "--images",
        type=int,
        default=DEMO_IMAGES,
        help="chest X-ray jobs: images per split (train, val, test) of the bundled PneumoniaMNIST, dealt "
        f"over the sites (default {DEMO_IMAGES})",
    )
    add_site_commands(sub)  # validate-site, check-table, preflight: also in the site runtime's fedhealth-site
    convert = sub.add_parser(
        "convert-medmnist",
        help="MedMNIST .npz -> per-site DICOM folders (non-IID)",
        formatter_class=CONVERT_FORMATTER,
    )
    add_convert_arguments(convert)
    up = sub.add_parser("up", help="provision and start the POC federation and keep it up (Ctrl-C stops it)")
    up.add_argument("--project", type=Path, default=root / "provision" / "poc.yml")
    up.add_argument("--workspace", type=Path, default=root / "workspace")
    up.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="SITE=PATH",
        help="a site's own data folder, written as data_root into <workspace>/poc/.../SITE/local/"
        "fedhealth_site.json (repeatable); sites not named get the kit's heart export and mapping",
    )
    up.add_argument("--fresh", action="store_true", help=FRESH_HELP)
    report = sub.add_parser(
        "report", help="the per-site report, plots and deployment decision of a downloaded job result"
    )
    report.add_argument("result", type=Path, help="the folder download_job (admin console) or the API wrote")
    report.add_argument("--out", type=Path, help="where to write the report (default: <result>/report)")
    report.add_argument(
        "--audit",
        type=Path,
        default=root / "results" / "bench_privacy_attacks.json",
        help="the privacy audit's results, for the report's measured attacks (default: %(default)s)",
    )
    export = sub.add_parser(
        "export-model",
        help="the global model of a job result as TorchScript and ONNX (checked) and its model card",
    )
    add_export_arguments(export)
    verify = sub.add_parser(
        "verify-audit",
        help="check a run's signed audit pack (audit_pack.json): signed by the server, not altered",
    )
    verify.add_argument("pack", type=Path, help="the audit_pack.json, or the downloaded job result folder")
    verify.add_argument(
        "--root-ca", type=Path, required=True, help="the project's rootCA.pem (in every startup kit)"
    )
    verify.add_argument("--server", help="the server's name as provisioned; the signer must be it")
    status = sub.add_parser("status", help="a POC job's status and, if it failed, which site and why")
    status.add_argument("job_id")
    status.add_argument("--project", type=Path, default=root / "provision" / "poc.yml")
    status.add_argument("--workspace", type=Path, default=root / "workspace")
    provision = sub.add_parser(
        "provision", help="production startup kits: what was made for whom, fingerprints, secrets"
    )
    add_provision_arguments(provision, root)
    netlab = sub.add_parser(
        "netlab",
        help="run a job with the server, admin and each hospital in its own network namespace, over "
        "links shaped by a profile (bandwidth, delay, jitter, loss); needs root",
    )
    add_netlab_arguments(netlab, root)
    curve = sub.add_parser(
        "privacy-utility",
        help="test metric against epsilon (DP-SGD at each site): heart (5 seeds, tuned by cross-validation) "
        "or cxr (PneumoniaMNIST in 4 sites, test AUC, 3 seeds, tuned on validation)",
    )
    curve.add_argument("--dataset", choices=("heart", "cxr"), default="heart")
    curve.add_argument("--out", type=Path, help="default results/privacy_utility[_cxr].json")
    curve.add_argument("--png", type=Path, help="default results/privacy_utility[_cxr].png")
    audit = sub.add_parser(
        "privacy-audit",
        help="attack what a job's sites would send (gradient inversion, row recovery, membership inference) "
        "at its own settings, batch 1 and the site floor, with and without its protection",
    )
    audit.add_argument("--job", type=Path, required=True, help="the job folder, e.g. jobs/cxr_fedavg")
    audit.add_argument("--out", type=Path, help="default results/privacy_audit/<job>.json")
    audit.add_argument("--png", type=Path, help="imaging jobs: default results/privacy_audit/<job>.png")
    audit.add_argument(
        "--quick", action="store_true", help="a smaller, weaker audit (minutes less; a smoke test)"
    )
    return parser


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # Ctrl-C stops everything, even if inherited as ignored
    site = run_site_command(args)
    if site is not None:
        return site
    if args.command == "provision":
        return run_provision_command(args)
    if args.command == "netlab":
        return run_netlab_command(args)
    if args.command == "privacy-utility":
        stem = "privacy_utility" if args.dataset == "heart" else "privacy_utility_cxr"
        root = _repo_root()
        out = args.out or root / "results" / f"{stem}.json"
        png = args.png or root / "results" / f"{stem}.png"
        if args.dataset == "cxr":
            from fedhealth_tools.privacy.utility_curve_cxr import cxr_table, run_cxr_curve

            print(cxr_table(run_cxr_curve(out_json=out, out_png=png)))
        else:
            from fedhealth_tools.privacy.utility_curve import run_curve, table

            print(table(run_curve(out_json=out, out_png=png)))
        print(f"wrote {out} and {png}")
        return 0
    if args.command == "privacy-audit":
        from fedhealth_tools.privacy.audit.run import main_audit

        folder = _repo_root() / "results" / "privacy_audit"
        name = Path(args.job).resolve().name
        return main_audit(
            args.job, args.out or folder / f"{name}.json", args.png or folder / f"{name}.png", args.quick
        )
    if args.command == "convert-medmnist":
        return run_convert(args)
    if args.command == "report":
        return _report(args.result, args.out, args.audit)
    if args.command == "export-model":
        return run_export(args)
    if args.command == "verify-audit":
        return _verify_audit(args.pack, args.root_ca, args.server)
    if args.command == "status":
        from fedhealth_tools.poc.status import job_status, poc_layout

        def status() -> None:
            layout = poc_layout(args.project, args.workspace)
            print(job_status(layout, args.job_id, Path(args.workspace) / "downloads"))

        return _run_poc("status", status, 130)
    if args.command == "up":
        from fedhealth_tools.poc.up import parse_data_options, run_up

        def up() -> None:
            data = parse_data_options(args.data)
            run_up(project_file=args.project, workspace=args.workspace, data=data, fresh=args.fresh)

        return _run_poc("up", up, 0)
    if args.command == "demo":
        from fedhealth_tools.poc.demo import run_demo

        def demo() -> None:
            run_demo(
                job_dir=args.job,
                project_file=args.project,
                workspace=args.workspace,
                results_dir=args.results,
                timeout=args.timeout,
                fresh=args.fresh,
                images=args.images,
            )

        return _run_poc("demo", demo, 130)
    return 0


def _report(result: Path, out: Path | None, audit: Path | None = None) -> int:
    """``fedhealth report RESULT``: write and print the report of a downloaded job result."""
    from fedhealth.reports.job_result import report_job_result, summary_text

    out = out or Path(result) / "report"
    try:
        report, paths = report_job_result(result, out, audit=audit)
    except (FileNotFoundError, ValueError) as exc:
        print(f"fedhealth report failed: {exc}", file=sys.stderr)
        return 1
    print(f"# {report['job']} (job {report['job_id']}, {report['rounds']} rounds)")
    print(summary_text(report))
    print("report: " + ", ".join(str(p) for p in paths))
    return 0


def _verify_audit(pack: Path, root_ca: Path, server: str | None) -> int:
    """``fedhealth verify-audit PACK --root-ca rootCA.pem``: exit 0 and a summary, or 1 and what failed."""
    from fedhealth.reports.audit_pack import load_signed, summary_lines, verify_pack

    try:
        doc, path = load_signed(pack)
        root_pem = Path(root_ca).read_bytes()
        checked = verify_pack(doc, root_pem, server=server)
    except (OSError, ValueError) as exc:
        print(f"fedhealth verify-audit: INVALID: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: valid")
    print("\n".join(summary_lines(checked, doc["signature"]["signer"])))
    return 0


def _run_poc(name: str, action, interrupted_code: int) -> int:
    """Run a POC command: a clear message and exit 1 on failure; Ctrl-C has already stopped everything."""
    try:
        action()
    except PocError as exc:
        print(f"\nfedhealth {name} failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nfedhealth {name} interrupted; every process it started was stopped.", file=sys.stderr)
        return interrupted_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
