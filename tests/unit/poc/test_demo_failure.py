"""A failed demo job names where each site kept its error log (sites do not stream logs)."""

from __future__ import annotations

from pathlib import Path

from fedhealth_tools.poc.demo import _failure_message, _site_error_logs
from fedhealth_tools.poc.workspace import PocLayout

JOB = "0b1c"


def test_failure_names_the_sites_own_error_logs(tmp_path: Path) -> None:
    layout = PocLayout(tmp_path, tmp_path / "prod_00", "server", "admin", ("cleveland", "hungary", "va"), 1)
    for site, text in (("cleveland", "refused"), ("hungary", "")):
        (layout.kit(site) / JOB).mkdir(parents=True)
        (layout.kit(site) / JOB / "error_log.txt").write_text(text)
    logs = _site_error_logs(layout, JOB)
    assert logs == str(layout.kit("cleveland") / JOB / "error_log.txt")  # empty and missing logs left out
    message = _failure_message(JOB, "FINISHED:ABNORMAL", tmp_path / "none", logs)
    assert message == (
        f"job {JOB} ended FINISHED:ABNORMAL - no site reported a reason (site error logs: {logs})"
    )
