"""The run report's section on DP releases of site updates (the strict scope's DPUpdate)."""

from __future__ import annotations

from pathlib import Path

from fedhealth.reports.run_report import build_report, write_report
from fedhealth.reports.update_privacy import update_privacy_markdown, update_privacy_section

# site -> ε after each round's train release (None: no release that round)
EPSILONS = {"switzerland": [0.5, 0.8, 1.0], "hungary": [2.0, None, 3.0]}


def _release(site: str, round_index: int | None, epsilon: float, releases: int, task: str = "train") -> dict:
    return {
        "site": site,
        "task": task,
        "filter": "DPUpdate",
        "round": round_index,
        "epsilon": epsilon,
        "delta": 1e-5,
        "noise_multiplier": 2.0,
        "noise_std": 0.4,
        "clip_norm": 0.1,
        "releases": releases,
    }


def _record() -> dict:
    releases = []
    for site, values in EPSILONS.items():
        done: list[float] = []
        for r, eps in enumerate(values):
            if eps is not None:
                done.append(eps)
                releases.append(_release(site, r, eps, len(done)))
    releases.append(_release("hungary", 2, 3.4, 3, task="submit_model"))
    return {"job_id": "j", "rounds": [], "failures": [], "update_privacy": releases}


def test_section_has_epsilon_per_round_final_and_other_releases() -> None:
    section = update_privacy_section(_record())
    assert section["rounds"] == [0, 1, 2]
    assert section["epsilon"] == EPSILONS
    assert section["final"]["hungary"] == {
        "epsilon": 3.4,
        "delta": 1e-5,
        "noise_multiplier": 2.0,
        "noise_std": 0.4,
        "clip_norm": 0.1,
        "releases": 3,
    }
    assert section["final"]["switzerland"]["epsilon"] == 1.0
    assert section["other"] == [
        {"site": "hungary", "task": "submit_model", "round": 2, "epsilon": 3.4, "releases": 3}
    ]


def test_markdown() -> None:
    text = update_privacy_markdown(update_privacy_section(_record()))
    assert "| switzerland | 1.000 | 1e-05 | 2.000 | 0.4 | 0.1 | 3 |" in text
    assert "| 1 | – | 0.80 |" in text
    assert "- hungary submit_model (round 2): ε 3.400 after 3 releases" in text


def test_no_release_no_section_and_the_run_report_shows_it(tmp_path: Path) -> None:
    assert update_privacy_section({"rounds": []}) is None and update_privacy_markdown(None) == ""
    report = build_report("heart_fedavg", _record(), {})
    assert report["update_privacy"]["final"]["switzerland"]["releases"] == 3
    write_report(report, tmp_path)
    assert "## Differential privacy of site updates" in (tmp_path / "report.md").read_text()
