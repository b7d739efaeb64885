"""The audit pack's one-page HTML: the facts, the per-site table with intervals, ε per site, escaping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.reports.audit_html import audit_html
from fedhealth.reports.audit_pack import build_pack, config_files
from fedhealth.reports.run_report import find_run_files

RESULT = Path(__file__).parent / "data" / "heart_fedprox_result"
JOB = Path(__file__).resolve().parents[3] / "jobs" / "heart_fedprox" / "app"
# (text the page must hold): the recorded run's facts as the report computes them.
EXPECTED = [
    "<h1>Audit pack: heart_fedprox</h1>",
    "995e77bd-ab92-49d2-9b14-5f9800c78cc4",
    "admin@fedhealth.org (fedhealth, project_admin)",
    "<td>cleveland</td><td>104</td><td>0.859</td><td>[0.780, 0.928]</td>",
    "the 95% lower bound 0.780 of auc clears the threshold 0.75",
    "<td>deployment decision</td><td>DO NOT DEPLOY</td>",
    "No site released its update with DP",
    "<h2>Rejected updates: 0</h2>",
    "server fl-server",
]


@pytest.fixture(scope="module")
def pack() -> dict:
    record, cross = find_run_files(RESULT)
    meta = json.loads((RESULT / "workspace" / "meta.json").read_text())
    return build_pack(
        record=record, cross=cross, job_meta=meta, configs=config_files(JOB), kit={"version": "0.1.0"}
    )


@pytest.mark.parametrize("text", EXPECTED, ids=[f"holds{i}" for i in range(len(EXPECTED))])
def test_page_holds_the_runs_facts(pack: dict, text: str) -> None:
    assert text in audit_html(pack, "fl-server")


def test_epsilon_per_site_and_escaping(pack: dict) -> None:
    final = {"<b>x</b>": {"epsilon": 2.5, "delta": 1e-5, "clip_norm": 1.0, "noise_multiplier": 1.1}}
    page = audit_html({**pack, "privacy": {"update_privacy": {"final": final}}}, "fl-server")
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td><td>2.500</td><td>1e-05</td><td>1.000</td><td>1.100</td>" in page
    assert "<b>x</b>" not in page and "No site released" not in page
