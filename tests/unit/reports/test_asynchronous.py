"""The asynchronous report section from a hand-written FedBuff record: counts, means, the table."""

from __future__ import annotations

import pytest

from fedhealth.reports.asynchronous import async_markdown, async_section


def _u(site: str, start: int, staleness: int) -> dict:
    return {
        "site": site,
        "start_version": start,
        "staleness": staleness,
        "staleness_weight": (1 + staleness) ** -0.5,
    }


RECORD = {
    "asynchronous": {
        "algorithm": "fedbuff",
        "settings": {"buffer_size": 2, "staleness_exponent": 0.5, "max_staleness": 5, "server_lr": 1.0},
        "versions": [
            {"version": 1, "updates": [_u("a", 0, 0), _u("b", 0, 0)]},
            {"version": 2, "updates": [_u("a", 1, 0), _u("slow", 0, 3)]},
            {"version": 3, "updates": [_u("b", 1, 2), _u("a", 2, 0)]},
        ],
        "dropped": [{"site": "slow", "start_version": 1, "staleness": 6}],
        "timeouts": [{"site": "gone", "start_version": 0, "status": "timeout"}],
        "late": [{"site": "gone", "start_version": 0}],
        "refused": 0,
        "failed_sites": {},
        "unfinished": {"slow": 3},
        "stopped": None,
    }
}


def test_per_site_counts_and_staleness():
    section = async_section(RECORD)
    assert (section["versions"], section["updates"]) == (3, 6)
    assert sorted(section["sites"]) == ["a", "b", "gone", "slow"]
    a, b, slow, gone = (section["sites"][s] for s in ("a", "b", "slow", "gone"))
    assert (a["updates"], a["share"], a["mean_staleness"], a["max_staleness"]) == (3, 0.5, 0, 0)
    assert (b["updates"], b["mean_staleness"], b["max_staleness"]) == (2, 1, 2)
    assert b["mean_staleness_weight"] == pytest.approx((1 + 3**-0.5) / 2)
    assert (slow["updates"], slow["mean_staleness_weight"], slow["dropped"]) == (1, 0.5, 1)
    assert (gone["updates"], gone["share"], gone["timeouts"], gone["late"]) == (0, 0.0, 1, 1)
    assert gone["mean_staleness"] is None


def test_markdown_table_rows():
    text = async_markdown(async_section(RECORD))
    assert text.startswith(
        "## Asynchronous aggregation (FedBuff)\n\n3 global versions from 6 site updates, 2 per"
    )
    assert "and one more than 5 versions old is dropped" in text
    assert "| slow | 1 | 17% | 3.0 | 3 | 0.500 | 1 | 0 | 0 |" in text
    assert "| gone | 0 | 0% | n/a | n/a | n/a | 0 | 1 | 1 |" in text


def test_a_synchronous_record_has_no_section():
    assert async_section({"rounds": []}) is None
    assert async_markdown(None) == ""
