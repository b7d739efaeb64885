"""The lab's small pieces: the --cut option, per-job link counters, the admin driver's marked lines."""

from __future__ import annotations

import json

import pytest

from fedhealth_tools.netlab.cli import _cut
from fedhealth_tools.netlab.driver import MARK, _emit
from fedhealth_tools.netlab.lab import LinkCut, _difference
from fedhealth_tools.netlab.topology import NetlabError


def test_a_cut_option_is_site_round_seconds() -> None:
    assert _cut("va_long_beach:2:60") == LinkCut("va_long_beach", 2, 60.0)
    assert _cut(None) is None
    with pytest.raises(NetlabError, match=r"--cut 'va:2': expected SITE:ROUND:SECONDS"):
        _cut("va:2")


def test_a_jobs_link_counters_are_the_difference_of_two_readings() -> None:
    before = {
        "up": {"frames": 10, "bytes": 1000, "dropped": 1, "queued": 3},
        "down": {"frames": 5, "bytes": 700, "dropped": 0, "queued": 0},
    }
    after = {
        "up": {"frames": 25, "bytes": 4000, "dropped": 4, "queued": 0},
        "down": {"frames": 9, "bytes": 1700, "dropped": 2, "queued": 1},
    }
    assert _difference(before, after) == {
        "up": {"frames": 15, "bytes": 3000, "dropped": 3, "queued": 0},
        "down": {"frames": 4, "bytes": 1000, "dropped": 2, "queued": 1},
    }


def test_the_driver_marks_its_own_lines(capsys: pytest.CaptureFixture[str]) -> None:
    _emit(progress={"current_round": 2})
    line = capsys.readouterr().out.strip()
    assert line.startswith(MARK)
    assert json.loads(line[len(MARK) :]) == {"progress": {"current_round": 2}}
