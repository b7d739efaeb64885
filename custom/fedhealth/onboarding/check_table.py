"""Before a hospital joins a tabular job: does its export fit the job's data dictionary?

``fedhealth check-table --dictionary <dictionary.json | job folder> --data <folder with CSVs + mapping.json>``
reads and harmonizes the site's table (:mod:`fedhealth.onboarding.tabular_inputs`) and prints the
data report (ignored columns, features the table does not record, problems by column and line) and
a present/missing count per feature; no model is needed. With ``--schema`` (a finished job's
``ehr_schema.json`` or result folder) it also says what the federation's model does with this table.
Exit code: 0 when every value could be used, 1 when some were set missing (see the report), 2 when
the table cannot be read or does not fit the mapping. Counts only, never a value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedhealth import constants as C
from fedhealth.data.messages import safe_reason
from fedhealth.ehr.dictionary import DataDictionary
from fedhealth.onboarding.tabular_inputs import (
    SiteRows,
    find_in_result,
    load_dictionary,
    load_schema,
    read_site_rows,
    schema_notes,
)

ABSENT = "-"


def count_table(rows: SiteRows, dictionary: DataDictionary, schema: dict | None = None) -> list[str]:
    """One line per dictionary feature: kind, the site's column, present and missing (and model use)."""
    kept = {s["name"] for s in schema["features"]} if schema is not None else set()
    header = ["feature", "kind", "column", "present", "missing"] + (["model"] if schema is not None else [])
    table = [header]
    for feature in dictionary.features:
        present = int(rows.features[feature.name].notna().sum())
        row = [
            feature.name,
            feature.kind,
            rows.columns.get(feature.name, ABSENT),
            str(present),
            str(len(rows.labels) - present),
        ]
        if schema is not None:
            row.append("kept" if feature.name in kept else "dropped")
        table.append(row)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    numeric = {3, 4}
    return [
        "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in table
    ]


def check_table(
    *, dictionary_path: Path, data_dir: Path, schema_path: Path | None = None
) -> tuple[list[str], int]:
    """The report's lines and the exit code (0 clean, 1 some values set missing); see the module docstring.

    Raises:
        ValueError: a bad dictionary or schema (:class:`~fedhealth.onboarding.artifacts.OnboardingError`)
            or a table that does not fit (:class:`~fedhealth.data.messages.SiteDataError`).
    """
    job = load_dictionary(Path(dictionary_path))
    dictionary = job.dictionary
    schema = None
    if schema_path is not None:
        schema = load_schema(find_in_result(Path(schema_path), C.EHR_SCHEMA_FILE), dictionary)
    rows = read_site_rows(Path(data_dir), dictionary, dataset=job.dataset)
    n, positive = len(rows.labels), int(rows.labels.sum())
    lines = [
        f"check-table: data dictionary {dictionary.name!r} version {dictionary.version} "
        f"({len(dictionary.features)} features, target {dictionary.target!r})",
    ]
    for report in rows.reports:
        lines += report.lines_out()
    lines.append(f"labelled patients: {n} ({positive} positive, {n - positive} negative)")
    lines += count_table(rows, dictionary, schema)
    if schema is not None:
        lines += schema_notes(rows, schema, dictionary)
    problems = sum(sum(r.counts().values()) for r in rows.reports)
    if problems:
        lines.append(
            f"result: {problems} value(s) could not be used and count as missing (see the lines above)"
        )
        return lines, 1
    lines.append("result: every recorded value could be used")
    return lines, 0


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``check-table`` options (also used by the ``fedhealth`` command's sub-parser)."""
    parser.add_argument(
        "--dictionary", type=Path, required=True, help="the data dictionary (JSON) or the job's folder"
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="folder with the export CSV(s) and mapping.json"
    )
    parser.add_argument("--schema", type=Path, help=f"a finished job's {C.EHR_SCHEMA_FILE} or result folder")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``check-table`` from parsed options: 0 clean, 1 values set missing, 2 on bad input."""
    try:
        lines, code = check_table(
            dictionary_path=args.dictionary, data_dir=args.data, schema_path=args.schema
        )
    except (ValueError, OSError) as exc:  # SiteDataError and OnboardingError are ValueErrors
        print(f"check-table: {safe_reason(exc)}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return code


def main(argv: list[str] | None = None) -> int:
    """``check-table`` as a stand-alone command."""
    parser = argparse.ArgumentParser(prog="fedhealth check-table", description=__doc__.splitlines()[0])
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
