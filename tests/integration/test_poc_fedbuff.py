"""FedBuff in POC: one hospital is much slower, the job does not wait for it and weights it down.

Real FLARE processes in POC mode. VA Long Beach runs a job app whose fault-drill filter holds every
train result back ``DELAY_S`` seconds (a straggler); the three others answer at once. The
asynchronous workflow makes its versions from whoever answers; VA's few updates arrive several
versions stale and count ``(1 + staleness) ** -0.5`` of their sample weight. The run record, the
report's participation and its asynchronous section say so; cross-site evaluation then scores the
last version at every site. Slow (about 1.5 minutes); marked ``slow``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fedhealth.reports.run_report import build_report, find_run_files, to_markdown
from fedhealth_tools.poc.demo import run_job
from fedhealth_tools.poc.variants import FAULT_FILTER, heart_poc, job_variant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SLOW = "va_long_beach"
DELAY_S = 2.0
VERSIONS, BUFFER = 40, 2


def _fedbuff_settings(job: Path) -> None:
    server = job / "app" / "config" / "config_fed_server.json"
    config = json.loads(server.read_text())
    (fedbuff,) = [w for w in config["workflows"] if w["id"] == "fedbuff"]
    fedbuff["args"].update(num_versions=VERSIONS, buffer_size=BUFFER)
    server.write_text(json.dumps(config, indent=2))


def test_a_slow_site_neither_holds_back_nor_outweighs_the_others(tmp_path: Path) -> None:
    started = time.monotonic()
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace, allow=[FAULT_FILTER])
    job = job_variant(
        ROOT / "jobs" / "heart_fedbuff",
        tmp_path / "jobs" / "heart_fedbuff",
        faulty_site=SLOW,
        fault={"mode": "slow", "delay_s": DELAY_S},
    )
    _fedbuff_settings(job)
    result = run_job(layout, job, workspace=workspace, timeout=240)  # raises unless FINISHED:COMPLETED
    record, cross = find_run_files(result)
    report = build_report("heart_fedbuff", record, cross)
    info = record["asynchronous"]
    assert info["settings"]["buffer_size"] == BUFFER and info["settings"]["staleness_exponent"] == 0.5
    assert [v["version"] for v in info["versions"]] == list(range(1, VERSIONS + 1))
    assert record["completed_rounds"] == list(range(VERSIONS)) and record["status"] == "finished"
    assert all(len(v["updates"]) == BUFFER for v in info["versions"])

    rows = report["asynchronous"]["sites"]
    fast = [s for s in layout.sites if s != SLOW]
    assert sum(rows[s]["updates"] for s in rows) == VERSIONS * BUFFER
    slow = rows[SLOW]
    assert slow["updates"] >= 1, "the slow site's update never made a version"
    assert all(rows[s]["updates"] > slow["updates"] for s in fast)
    # stale, and weighted down by exactly FedBuff's polynomial weight
    updates = [u for v in info["versions"] for u in v["updates"] if u["site"] == SLOW]
    assert min(u["staleness"] for u in updates) >= 2
    assert all(u["staleness_weight"] == pytest.approx((1 + u["staleness"]) ** -0.5) for u in updates)
    assert slow["mean_staleness"] > max(rows[s]["mean_staleness"] for s in fast)
    assert slow["mean_staleness_weight"] < min(rows[s]["mean_staleness_weight"] for s in fast)
    # the report: VA trained from few versions, the others from most; all four scored the last version
    participation = report["participation"]
    assert all(participation[s]["rounds"] > participation[SLOW]["rounds"] for s in fast)
    assert sorted(s["name"] for s in report["sites"] if s["accuracy"] is not None) == sorted(layout.sites)
    assert "## Asynchronous aggregation (FedBuff)" in to_markdown(report)
    print(f"\nFedBuff POC: {time.monotonic() - started:.0f} s; per site {json.dumps(rows, indent=1)}")
