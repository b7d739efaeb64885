"""The client-level DP section of a run report: final (ε, δ), the settings and the sampling rate."""

from __future__ import annotations

from fedhealth.reports.client_dp_report import client_dp_markdown, client_dp_section
from fedhealth.reports.run_report import build_report, to_markdown

SETTINGS = {"delta": 1e-3, "noise_multiplier": 1.725, "clip_norm": 0.25, "expected_sites": 3}
SITES = ["a", "b", "c"]
# (round, ε, the rate the round was accounted at, the sites aggregated): round 2 had two sites connected
ROUNDS = [(0, 1.21, 0.75, SITES), (1, 1.86, 0.75, SITES), (2, 2.97, 1.0, SITES[:2])]


def _record() -> dict:
    entries = [
        {"round": r, "epsilon": e, "sample_rate": q, "planned_sample_rate": 0.75, "sites": s, **SETTINGS}
        for r, e, q, s in ROUNDS
    ]
    return {"job_id": "j", "rounds": [], "client_dp": list(reversed(entries)), "failures": []}


def test_section_has_the_final_guarantee_and_each_rounds_rate() -> None:
    section = client_dp_section(_record())
    assert section["rounds"] == [0, 1, 2] and section["epsilon"] == [1.21, 1.86, 2.97]
    assert section["sample_rate"] == [0.75, 0.75, 1.0] and section["sites"] == [3, 3, 2]
    assert section["final"] == {
        "epsilon": 2.97,
        **SETTINGS,
        "planned_sample_rate": 0.75,
        "rounds_released": 3,
    }
    assert client_dp_section({"rounds": []}) is None and client_dp_markdown(None) == ""


def test_markdown_states_the_rate_and_the_rounds_at_another_rate() -> None:
    text = client_dp_markdown(client_dp_section(_record()))
    assert text.startswith("## Client-level DP (DP-FedAvg on the server)")
    assert (
        "Site-level guarantee after 3 released rounds: ε = 2.970, δ = 0.001 (noise σ = 1.725, clip C = 0.25, "
        "fixed denominator m = 3, sampling rate q = 0.750)."
    ) in text
    assert "Round(s) 2 were accounted at a higher q: fewer sites were connected." in text
    assert "| 0 | 3 | 0.750 | 1.21 |\n| 1 | 3 | 0.750 | 1.86 |\n| 2 | 2 | 1.000 | 2.97 |" in text
    assert text in to_markdown(build_report("heart_client_dp_sampled", _record(), {}))
