"""The communication section totals the measured bytes per site and overall."""

from __future__ import annotations

import pytest

from fedhealth.reports.communication import communication_markdown, communication_section

RECORD = {
    "rounds": [
        {
            "round": r,
            "sites": {
                "a": {
                    "bytes_raw": 1000,
                    "bytes_sent": 100,
                    "bytes_received": 100,
                    "compression": "topk 0.1 +EF",
                },
                "b": {
                    "bytes_raw": 1000,
                    "bytes_sent": 200,
                    "bytes_received": 200,
                    "compression": "topk 0.1 +EF",
                },
            },
        }
        for r in range(3)
    ]
}


def test_totals_and_ratios():
    section = communication_section(RECORD)
    assert section["modes"] == ["topk 0.1 +EF"]
    assert section["sites"]["a"] == {
        "rounds": 3,
        "bytes_raw": 3000,
        "bytes_sent": 300,
        "bytes_received": 300,
        "ratio": 10.0,
    }
    assert section["sites"]["b"]["ratio"] == 5.0
    assert section["total"] == {"bytes_raw": 6000, "bytes_sent": 900, "ratio": pytest.approx(6000 / 900)}
    text = communication_markdown(section)
    assert (
        "| a | 3 | 3,000 | 300 | 300 | 10.0x |" in text and "| **total** | | 6,000 | 900 | | 6.7x |" in text
    )


def test_no_section_without_measurements():
    assert communication_section({"rounds": [{"round": 0, "sites": {"a": {"accuracy": 0.8}}}]}) is None
    assert communication_markdown(None) == ""
