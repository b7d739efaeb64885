"""Personal vs global per site, and which method serves each site best."""

from __future__ import annotations

import pytest

from fedhealth.reports.personalization import (
    best_by_site,
    format_personal,
    personal_from_record,
    personal_vs_global,
)

PER_METHOD = {
    "fedavg": {"a": 0.80, "b": 0.70},
    "ditto": {"a": 0.78, "b": 0.90},
    "scaffold": {"a": 0.85, "b": 0.88},
}
# site -> (best method, its value, margin over the runner-up)
EXPECTED_BEST = {"a": ("scaffold", 0.85, 0.05), "b": ("ditto", 0.90, 0.02)}


@pytest.mark.parametrize(("site", "expected"), EXPECTED_BEST.items())
def test_best_by_site(site, expected):
    row = best_by_site(PER_METHOD)[site]
    assert (row["method"], row["value"]) == expected[:2]
    assert row["margin"] == pytest.approx(expected[2])


def test_personal_vs_global_gains_and_text():
    rows = personal_vs_global(PER_METHOD["ditto"], PER_METHOD["fedavg"], method="ditto")
    assert rows["b"]["gain"] == pytest.approx(0.20) and rows["a"]["gain"] == pytest.approx(-0.02)
    lines = format_personal(rows).splitlines()
    assert lines[0].split() == ["site", "personal", "global", "gain"]
    assert lines[2].split() == ["b", "0.900", "0.700", "+0.200"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: personal_vs_global({"a": 1.0}, {"b": 1.0}, method="x"), "different sites"),
        (lambda: best_by_site({}), "at least one method"),
        (lambda: best_by_site({"m": {"a": 1.0}, "n": {"b": 1.0}}), "same sites"),
    ],
)
def test_mismatches_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


RECORD = {
    "rounds": [
        {"round": 0, "sites": {"a": {"personal_accuracy": 0.5, "global_accuracy": 0.4}}},
        {
            "round": 1,
            "sites": {
                "a": {"personal_accuracy": 0.9, "global_accuracy": 0.7},
                "b": {"personal_accuracy": 0.6, "global_accuracy": 0.8},
            },
        },
    ]
}
# (final global accuracies from cross-site evaluation, expected {site: (personal, global)})
FROM_RECORD = [
    (None, {"a": (0.9, 0.7), "b": (0.6, 0.8)}),
    ({"a": 0.75, "b": None}, {"a": (0.9, 0.75), "b": (0.6, 0.8)}),
]


@pytest.mark.parametrize(("final", "expected"), FROM_RECORD)
def test_personal_from_a_run_record(final, expected):
    rows = personal_from_record(RECORD, final)
    assert {s: (r["personal"], r["global"]) for s, r in rows.items()} == expected
    assert rows["a"]["gain"] == pytest.approx(expected["a"][0] - expected["a"][1])


def test_no_personal_model_no_section():
    assert personal_from_record({"rounds": [{"sites": {"a": {"global_accuracy": 0.7}}}]}) is None
    assert personal_from_record({}) is None
