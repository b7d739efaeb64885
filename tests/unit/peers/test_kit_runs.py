"""The kit side's figures of one job, from a run record, a report and the meters' readings."""

from __future__ import annotations

import pytest

from fedhealth.constants import M_TASK_S
from fedhealth_tools.peers.kit_runs import client_average, measured_row


def _record() -> dict:
    stamps = [{"round": r, "started": 100.0 + 10 * r, "done": 103.0 + 10 * r} for r in range(3)]
    rounds = [{"round": r, "sites": {"a": {M_TASK_S: 1.0 + r}, "b": {M_TASK_S: 0.5}}} for r in range(3)]
    return {"round_times": stamps, "rounds": rounds, "started": 95.0}


REPORT = {"sites": [{"name": "a", "accuracy": 0.8, "auc": 0.9}, {"name": "b", "accuracy": 0.6, "auc": None}]}


def test_client_average_skips_withheld_sites():
    assert client_average(REPORT, "accuracy") == pytest.approx(0.7)
    assert client_average(REPORT, "auc") == pytest.approx(0.9)
    assert client_average({"sites": [{"name": "a", "auc": None}]}, "auc") is None


def test_measured_row_times_bytes_and_memory():
    links = {"a": {"bytes_sent": 600, "bytes_received": 300, "sockets": 1}}
    memory = {"peak_total_mb": 1500.0, "peak_mb": {"server": 700.0, "a": 800.0}}
    row = measured_row(
        _record(),
        REPORT,
        memory=memory,
        links=links,
        submitted=90.0,
        finished=140.0,
        status="FINISHED:COMPLETED",
        load=(1.0, 1.0, 1.0),
    )
    assert row["rounds"] == 3
    assert row["submit_to_first_round_s"] == pytest.approx(10.0)
    assert row["job_wall_s"] == pytest.approx(50.0)
    assert row["round_s"] == pytest.approx(3.0)
    # rounds after the first: 3 s wall minus the slowest site's 2 s and 3 s of training
    assert row["overhead_s"] == pytest.approx(0.5)
    assert row["bytes_per_site_per_round"] == {"a": pytest.approx(300.0)}
    assert (row["peak_mem_mb"], row["client_avg_accuracy"]) == (1500.0, pytest.approx(0.7))
