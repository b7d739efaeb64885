"""DP-SGD in a real POC federation: one hospital's own privacy budget runs out, it declines, the job
completes with the others, and the report names the site, the round and the reason.

Real FLARE processes in POC mode, real Opacus accounting at each site. ``jobs/heart_dp`` (target
ε = 5 after all rounds, δ = 0.1/n, C = 1, batch 16) over 6 rounds; Hungary's own
``local/fedhealth_site.json`` caps its ε at 3.5. With its 193 training patients (sample rate 1/13,
13 steps a round, σ ≈ 0.90) its ε after rounds 0, 1, 2 is ≈ 2.54, 3.20, 3.73: it trains two rounds
and declines round 2 and every round after.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth import constants as C
from fedhealth.reports.run_report import build_report, find_run_files, to_markdown
from fedhealth_tools.poc.drills import run_drill
from fedhealth_tools.poc.variants import heart_poc, job_variant
from fedhealth_tools.poc.workspace import update_site_settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 6
CAPPED = "hungary"
CAP = 3.5
TARGET = 5.0
STOP_ROUND = 2


def test_a_site_at_its_budget_declines_and_the_job_completes_with_the_others(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    update_site_settings(layout.kit(CAPPED), **{C.SITE_DP_MAX_EPSILON_KEY: CAP})
    job = job_variant(
        ROOT / "jobs" / "heart_dp", tmp_path / "jobs" / "heart_dp", rounds=ROUNDS, cse_timeout_s=30
    )
    drill = run_drill(layout, job, workspace=workspace, timeout=400)
    assert drill.status == "FINISHED:COMPLETED"

    record, cross = find_run_files(drill.result)
    report = build_report("heart_dp", record, cross)
    assert report["rounds"] == ROUNDS
    privacy = report["privacy"]
    (stopped,) = privacy["stopped"]
    assert (stopped["site"], stopped["round"]) == (CAPPED, STOP_ROUND)
    assert f"{C.DP_DECLINED}: round {STOP_ROUND} would raise epsilon from 3.199" in stopped["reason"]
    assert f"past this site's budget of {CAP:.3f}" in stopped["reason"]
    declined = [f["round"] for f in report["failures"] if f["site"] == CAPPED]
    assert declined == list(range(STOP_ROUND, ROUNDS))  # it declines every round after, too
    assert report["participation"][CAPPED]["missed_rounds"] == list(range(STOP_ROUND, ROUNDS))

    hungary = privacy["epsilon"][CAPPED]
    assert hungary[:STOP_ROUND] == pytest.approx([2.54, 3.20], abs=0.02)
    assert hungary[STOP_ROUND:] == [None] * (ROUNDS - STOP_ROUND)
    assert privacy["final"][CAPPED]["rounds_trained"] == STOP_ROUND
    for site in set(layout.sites) - {CAPPED}:
        eps = privacy["epsilon"][site]
        assert None not in eps and eps == sorted(eps), site  # trained every round, ε grows
        assert TARGET - 0.1 < eps[-1] <= TARGET + 1e-6, site  # the plan spends the target, no more
        assert privacy["final"][site]["delta"] < 1 / 30
        assert report["participation"][site]["rate"] == 1.0
    # Every site, Hungary included, still evaluated the final global model.
    assert all(report["sites"][i]["accuracy"] is not None for i in range(len(report["sites"])))
    text = to_markdown(report)
    assert (
        f"- {CAPPED} declined round {STOP_ROUND}: site {CAPPED} failed task 'train': {C.DP_DECLINED}" in text
    )
    # The site's ledger in its own workspace agrees with what the server recorded.
    ledger_file = next((layout.kit(CAPPED)).rglob(C.DP_LEDGER_FILE))
    ledger = json.loads(ledger_file.read_text())
    assert ledger["declined"]["round"] == STOP_ROUND and ledger["budget"] == CAP
    assert [e["epsilon"] for e in ledger["entries"]] == pytest.approx(hungary[:STOP_ROUND])
    print(f"\n{to_markdown(report).split('## Differential privacy')[1]}")
