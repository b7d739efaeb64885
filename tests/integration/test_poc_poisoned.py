"""A site sends a poisoned update every round: the server rejects it and the model stays sound.

Real FLARE processes in POC mode; VA Long Beach runs a job app with fedhealth's fault-drill filter
(NaN in its weights, or every weight x100); the RobustAggregator must reject it each round.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.poc.demo import run_job
from fedhealth_tools.poc.variants import FAULT_FILTER, heart_poc, job_variant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
POISONED = "va_long_beach"
# (mode, words the rejection reason must contain)
CASES = [("nan", "non-finite"), ("scale", "norm")]


@pytest.mark.parametrize(("mode", "words"), CASES)
def test_poisoned_updates_are_rejected_every_round(tmp_path: Path, mode: str, words: str) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace, allow=[FAULT_FILTER])
    job = job_variant(
        ROOT / "jobs" / "heart_fedprox",
        tmp_path / "jobs" / "heart_fedprox",
        rounds=ROUNDS,
        faulty_site=POISONED,
        fault={"mode": mode, "factor": 100.0},
    )
    result = run_job(layout, job, workspace=workspace, timeout=300)
    record, cross = find_run_files(result)
    report = build_report("heart_fedprox", record, cross)
    rejected = report["rejected_updates"]
    assert [r["site"] for r in rejected] == [POISONED] * ROUNDS
    assert sorted(r["round"] for r in rejected) == list(range(ROUNDS))
    assert all(words in r["reason"] for r in rejected)
    assert report["participation"][POISONED]["rate"] == 0.0  # reported every round, counted in none
    assert report["participation"][POISONED]["rejected_rounds"] == list(range(ROUNDS))
    # The global model stayed sound: finite, and it beats its start at every honest site.
    for site in report["sites"]:
        if site["name"] != POISONED:
            assert site["loss"] < site["initial"]["loss"], site["name"]
        assert site["accuracy"] is not None and 0.0 <= site["accuracy"] <= 1.0
