"""Round overhead from the run record: round wall time minus the slowest site's task time."""

from __future__ import annotations

import pytest

from fedhealth.constants import M_TASK_S
from fedhealth.reports.timing import round_timings, timing_summary


def _record() -> dict:
    return {
        "started": 100.0,
        "round_times": [
            {"round": 0, "started": 110.0, "done": 115.0},
            {"round": 1, "started": 115.5, "done": 117.0},
            {"round": 2, "started": 117.2, "done": 118.4},
            {"round": 3, "started": 118.5},  # still running: not counted
        ],
        "rounds": [
            {"round": 0, "sites": {"a": {M_TASK_S: 3.0}, "b": {M_TASK_S: 4.0}}},
            {"round": 1, "sites": {"a": {M_TASK_S: 0.5}, "b": {M_TASK_S: 0.25}}},
            {"round": 2, "sites": {"a": {M_TASK_S: 0.2}, "b": {}}},
        ],
    }


def test_round_rows() -> None:
    rows = round_timings(_record())
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[0]["wall_s"] == pytest.approx(5.0) and rows[0]["overhead_s"] == pytest.approx(1.0)
    assert rows[1]["slowest_site_s"] == pytest.approx(0.5) and rows[1]["overhead_s"] == pytest.approx(1.0)
    assert rows[2]["overhead_s"] == pytest.approx(1.0) and rows[2]["sites"] == 2


def test_summary_skips_the_first_round_and_reports_startup() -> None:
    summary = timing_summary(_record())
    assert summary["rounds"] == 3
    assert summary["round_s"] == pytest.approx((1.5 + 1.2) / 2)
    assert summary["overhead_s"] == pytest.approx(1.0)
    assert summary["first_round_s"] == pytest.approx(5.0) and summary["startup_s"] == pytest.approx(10.0)
    assert timing_summary(_record(), skip_first=False)["round_s"] == pytest.approx(1.5)


def test_a_site_without_task_seconds_leaves_overhead_unknown() -> None:
    record = {
        "round_times": [{"round": 0, "started": 0.0, "done": 1.0}],
        "rounds": [{"round": 0, "sites": {"a": {}}}],
    }
    (row,) = round_timings(record)
    assert row["slowest_site_s"] is None and row["overhead_s"] is None


def test_an_old_record_is_refused() -> None:
    with pytest.raises(ValueError, match="no round_times"):
        round_timings({"rounds": []})
