"""The docs' benchmark tables match ``results/*.json``, and the front page's links resolve.

``scripts/docs_tables.py`` writes every table between ``BEGIN GENERATED`` / ``END GENERATED``
markers; a table typed or edited by hand, or a JSON rerun without ``make docs-tables``, fails here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
RESULTS = ROOT / "results"

# scripts/ is not a package: the script imports its sibling package doc_tables as it does when run.
sys.path.insert(0, str(ROOT / "scripts"))
_spec = importlib.util.spec_from_file_location("docs_tables", ROOT / "scripts" / "docs_tables.py")
assert _spec is not None and _spec.loader is not None
docs_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs_tables)

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def test_committed_docs_match_the_results() -> None:
    stale = docs_tables.stale(DOCS, RESULTS)
    assert stale == [], f"stale generated docs (run `make docs-tables` and commit): {stale}"


def test_every_table_is_on_a_page_and_every_marker_is_known() -> None:
    used = set()
    for page in docs_tables.pages(DOCS):
        used |= set(re.findall(r"<!-- BEGIN GENERATED: ([a-z0-9.-]+) -->", page.read_text()))
    assert used == set(docs_tables.TABLES), f"unused: {set(docs_tables.TABLES) - used}"


@pytest.mark.parametrize("name", sorted(docs_tables.TABLES))
def test_each_table_renders_from_the_committed_results(name: str) -> None:
    text = docs_tables.TABLES[name](RESULTS)
    assert text.strip()
    if text.startswith("|"):
        header, rule, *rows = text.split("\n")
        assert rows, f"{name}: no rows"
        assert all(line.count(" | ") == header.count(" | ") for line in [rule, *rows]), name


def test_a_changed_result_changes_the_page_and_is_reported_stale(tmp_path: Path) -> None:
    results = tmp_path / "results"
    docs = tmp_path / "docs"
    shutil.copytree(RESULTS, results)
    shutil.copytree(DOCS, docs)
    data = json.loads((results / "bench_faults.json").read_text())
    data["robust_rules"]["median"]["client_avg"] = 0.123456
    (results / "bench_faults.json").write_text(json.dumps(data))

    assert docs_tables.stale(docs, results) == ["reliability.md"]
    assert docs_tables.write(docs, results) == ["reliability.md"]
    assert "| median | 0.123 ± 0.015 |" in (docs / "reliability.md").read_text()
    assert docs_tables.stale(docs, results) == []


def test_a_hand_edited_table_is_stale(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "benchmarks.md"
    page.write_text(page.read_text().replace("| kit_fedavg_logreg | 0.807", "| kit_fedavg_logreg | 0.907"))
    assert docs_tables.stale(docs, RESULTS) == ["benchmarks.md"]


def test_a_copied_plot_that_differs_is_stale(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    (docs / "img" / "privacy_utility.png").write_bytes(b"not the plot")
    assert docs_tables.stale(docs, RESULTS) == ["img/privacy_utility.png"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a\n<!-- BEGIN GENERATED: no-such-table -->\n<!-- END GENERATED -->\n",
            "page.md:2: unknown generated table",
        ),
        (
            "<!-- BEGIN GENERATED: faults -->\n| stale |\n",
            "page.md:1: table 'faults' has no '<!-- END GENERATED -->'",
        ),
    ],
)
def test_bad_markers_name_the_page_and_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        docs_tables.fill(text, RESULTS, where="page.md")


def test_a_missing_result_file_says_which_target_writes_it(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"bench_heart\.json: benchmark result missing \(run its `make bench-\*`"
    ):
        docs_tables.TABLES["heart-bench"](tmp_path)


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slugify(h.strip(), "-") for h in HEADING.findall(text)}


def _links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


MARKDOWN_OUTSIDE_DOCS = [ROOT / "README.md", *sorted((ROOT / "jobs").glob("*/README.md"))]


@pytest.mark.parametrize("page", MARKDOWN_OUTSIDE_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_outside_docs_resolve(page: Path) -> None:
    """mkdocs checks the links in docs/; the front page and the job READMEs are checked here."""
    broken = []
    for link in _links(page):
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(f"{link}: no heading with that anchor in {target.relative_to(ROOT)}")
    assert broken == [], f"{page.relative_to(ROOT)}: {broken}"


def test_front_page_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 250, f"README.md has {len(lines)} lines; move topics to docs/"
