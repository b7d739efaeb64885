"""A failed demo job names where each site kept its error log (sites do not stream logs)."""

from __future__ import annotations

from pathlib import Path

from fedhealth_tools.poc.demo import _failure_message
from fedhealth_tools.poc.status import site_error_lines
from fedhealth_tools.poc.workspace import PocLayout

JOB = "0b1c"


def test_failure_names_the_sites_own_error_logs(tmp_path: Path) -> None:
    layout = PocLayout(tmp_path, tmp_path / "prod_00", "server", "admin", ("cleveland", "hungary", "va"), 1)
    for site, text in (("cleveland", "refused"), ("hungary", "")):
        (layout.kit(site) / JOB).mkdir(parents=True)
        (layout.kit(site) / JOB / "error_log.txt").write_text(text)
    lines = site_error_lines(layout, JOB)
    assert lines == {
        "cleveland": f"refused ({layout.kit('cleveland') / JOB / 'error_log.txt'})"
    }  # empty, missing: out
    logs = "; ".join(f"{site}: {line}" for site, line in lines.items())
    message = _failure_message(JOB, "FINISHED:ABNORMAL", tmp_path / "none", logs)
    assert message == (
        f"job {JOB} ended FINISHED:ABNORMAL - no site reported a reason (site error logs: {logs})"
    )


def test_status_shows_the_root_exception_of_a_poc_sites_error_log(tmp_path: Path) -> None:
    layout = PocLayout(tmp_path, tmp_path / "prod_00", "server", "admin", ("cleveland", "hungary"), 1)
    (layout.kit("cleveland") / JOB).mkdir(parents=True)
    log = layout.kit("cleveland") / JOB / "error_log.txt"
    log.write_text(
        "Traceback (most recent call last):\n  File 'x.py', line 1\n"
        "TypeError: SiteExecutor.__init__() got an unexpected keyword argument 'no_such_argument'\n\n"
        "During handling of the above exception, another exception occurred:\n"
        "nvflare.fuel.common.excepts.ConfigError: Error processing '/a/very/long/path' in element ...\n"
    )
    cause = "TypeError: SiteExecutor.__init__() got an unexpected keyword argument 'no_such_argument'"
    assert site_error_lines(layout, JOB) == {"cleveland": f"{cause} ({log})"}  # hungary has no log
