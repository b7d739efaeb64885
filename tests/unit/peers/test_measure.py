"""The peer runs' shared measurements: process-tree memory and the kit's timing summary of Flower results."""

from __future__ import annotations

import pytest

from fedhealth_tools.peers.measure import summary


def _results() -> dict:
    stamps = [(0, 10.0, 13.0), (1, 13.5, 14.5), (2, 15.0, 16.2)]  # (round, started, done)
    return {
        "started": 5.0,
        "round_times": [{"round": r, "started": s, "done": d} for r, s, d in stamps],
        "rounds": [
            {
                "round": r,
                "sites": {"a": {"task_s": 0.4}, "b": {"task_s": 0.2 + r}},
                "bytes_down_per_site": 100 + r,
                "bytes_up": {"a": 50, "b": 70},
            }
            for r, _, _ in stamps
        ],
        "client_avg_accuracy": 0.8,
        "client_avg_auc": 0.9,
        "sites": 2,
    }


def test_summary_uses_the_kits_definitions() -> None:
    out = summary(_results())
    assert out["rounds"] == 3 and out["startup_s"] == pytest.approx(5.0)
    assert out["first_round_s"] == pytest.approx(3.0)
    assert out["round_s"] == pytest.approx((1.0 + 1.2) / 2)  # median of the rounds after the first
    assert out["overhead_s"] == pytest.approx(((1.0 - 1.2) + (1.2 - 2.2)) / 2)  # wall minus slowest site
    assert (out["bytes_up_per_site_round"], out["bytes_down_per_site_round"]) == (60, 101)
    assert (out["client_avg_auc"], out["sites"]) == (0.9, 2)
