"""Benchmark tables in the docs, generated from ``results/*.json``: never typed by hand.

A page asks for a table with a pair of markers; ``make docs-tables`` (this script) fills the lines
between them from the committed benchmark JSON and copies the result plots the docs show::

    <!-- BEGIN GENERATED: heart-bench -->
    (written by this script)
    <!-- END GENERATED -->

``python scripts/docs_tables.py --check`` writes nothing and exits 1 naming every stale page;
``tests/unit/docs/test_docs_tables.py`` runs the same check, so a table that no longer matches its
JSON fails CI. A marker naming no known table is an error that names the page and line.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from doc_tables import TABLES

ROOT = Path(__file__).resolve().parent.parent
END = "<!-- END GENERATED -->"
NOTE = "<!-- generated from results/*.json by `make docs-tables` (scripts/docs_tables.py): do not edit -->"
# Plots the docs show: (file under results/, file under docs/).
ASSETS = (
    ("privacy_utility.png", "img/privacy_utility.png"),
    ("privacy_utility_cxr.png", "img/privacy_utility_cxr.png"),
    ("privacy_attacks.png", "img/privacy_attacks.png"),
)


BEGIN = re.compile(r"^<!-- BEGIN GENERATED: ([a-z0-9.-]+) -->$")


def fill(text: str, results: Path, *, where: str = "<text>") -> str:
    """``text`` with every marked block rewritten from ``results``; errors name ``where`` and the line."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        match = BEGIN.match(line.strip())
        i += 1
        if not match:
            continue
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(
                f"{where}:{i}: unknown generated table {name!r} (known: {', '.join(sorted(TABLES))})"
            )
        end = next((j for j in range(i, len(lines)) if lines[j].strip() == END), None)
        if end is None:
            raise ValueError(f"{where}:{i}: table {name!r} has no '{END}' line")
        out += [NOTE, "", TABLES[name](results), "", END]
        i = end + 1
    return "\n".join(out)


def pages(docs: Path) -> list[Path]:
    return sorted(p for p in docs.rglob("*.md") if p.is_file())


def stale(docs: Path, results: Path) -> list[str]:
    """What ``make docs-tables`` would change: page paths and plot copies, relative to ``docs``."""
    found = [
        str(p.relative_to(docs))
        for p in pages(docs)
        if fill(p.read_text(), results, where=str(p)) != p.read_text()
    ]
    for src, dest in ASSETS:
        target = docs / dest
        if not target.is_file() or target.read_bytes() != (results / src).read_bytes():
            found.append(dest)
    return found


def write(docs: Path, results: Path) -> list[str]:
    changed = stale(docs, results)
    for page in pages(docs):
        page.write_text(fill(page.read_text(), results, where=str(page)))
    for src, dest in ASSETS:
        (docs / dest).parent.mkdir(parents=True, exist_ok=True)
        (docs / dest).write_bytes((results / src).read_bytes())
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    args = parser.parse_args(argv)
    if args.check:
        found = stale(args.docs, args.results)
        for name in found:
            print(f"stale: docs/{name} (run `make docs-tables`)", file=sys.stderr)
        return 1 if found else 0
    for name in write(args.docs, args.results):
        print(f"updated docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
