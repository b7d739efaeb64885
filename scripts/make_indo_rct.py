"""Generate the ``indo_rct`` sites and job spec: a second tabular dataset by config only.

Run as::

    python scripts/make_indo_rct.py --data-root-of cleveland=/sites/cle --data-root-of hungary=/sites/hun \\
        --spec job_specs/indo_rct.json

Each ``--data-root-of SITE=PATH`` writes that POC site's trial centre (``1_UM`` -> cleveland,
``2_IU`` -> hungary, ``3_UK`` -> switzerland, ``4_Case`` -> va_long_beach) into
``PATH/indo_rct/`` (train.csv, test.csv, mapping.json). ``--spec`` writes the job family spec built
from ``job_specs/heart.json``; ``make jobs`` then writes ``jobs/indo_rct_fedavg/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from fedhealth_tools.data.indo_rct import SITE_OF, write_indo_rct
from fedhealth_tools.data.indo_rct_job import indo_rct_spec
from fedhealth_tools.jobs.spec import SPECS_DIR, dump


def _site_root(text: str) -> tuple[str, Path]:
    site, sep, path = text.partition("=")
    if not sep or not site or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not SITE=PATH")
    if site not in SITE_OF:
        raise argparse.ArgumentTypeError(f"{site!r} is not one of the POC sites {sorted(SITE_OF)}")
    return site, Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root-of",
        type=_site_root,
        action="append",
        default=[],
        metavar="SITE=PATH",
        help="write SITE's trial centre under PATH/indo_rct/ (repeat per site)",
    )
    parser.add_argument("--spec", type=Path, help="write the job family spec here (job_specs/indo_rct.json)")
    parser.add_argument("--heart-spec", type=Path, default=SPECS_DIR / "heart.json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.data_root_of and args.spec is None:
        parser.error("nothing to do: give --data-root-of SITE=PATH and/or --spec PATH")
    roots = dict(args.data_root_of)
    for site, (n_train, n_test) in write_indo_rct(roots).items():
        print(f"{site} ({SITE_OF[site]}): {n_train} train, {n_test} test -> {roots[site] / 'indo_rct'}")
    if args.spec is not None:
        spec = indo_rct_spec(json.loads(args.heart_spec.read_text()))
        args.spec.parent.mkdir(parents=True, exist_ok=True)
        args.spec.write_text(dump(spec))
        print(f"wrote {args.spec}; run `make jobs` to write its job folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
