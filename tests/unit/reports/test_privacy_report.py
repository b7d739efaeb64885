"""The privacy section of the run report: ε per site per round, final (ε, δ), the site that stopped."""

from __future__ import annotations

from pathlib import Path

from fedhealth import constants as C
from fedhealth.reports.privacy_report import plot_privacy, privacy_markdown, privacy_section
from fedhealth.reports.run_report import build_report, write_report

# site -> ε after each round it trained (None: declined); "hungary" stops at round 2.
EPSILONS = {"cleveland": [0.8, 1.2, 1.5, 1.8], "hungary": [0.9, 1.3, None, None]}
REASON = f"site hungary failed task 'train': {C.DP_DECLINED}: round 2 would raise epsilon from 1.3 to 1.6"


def _ledger(epsilon: float) -> dict:
    return {
        "epsilon": epsilon,
        "delta": 5e-4,
        "noise_multiplier": 1.1,
        "max_grad_norm": 1.0,
        "sample_rate": 0.08,
    }


def _record() -> dict:
    rounds = []
    for r in range(4):
        sites = {
            site: {"n_train": 100, "n_test": 50, C.M_PRIVACY: _ledger(eps[r])}
            for site, eps in EPSILONS.items()
            if eps[r] is not None
        }
        rounds.append({"round": r, "sites": sites})
    failures = [
        {"site": "hungary", "task": "train", "round": 2, "reason": REASON},
        {"site": "hungary", "task": "train", "round": 3, "reason": REASON.replace("round 2", "round 3")},
        {"site": "va_long_beach", "task": "validate", "round": 3, "reason": "data unusable"},
    ]
    return {"job_id": "j", "rounds": rounds, "failures": failures}


def test_section_has_epsilon_per_round_final_guarantee_and_the_stopped_site() -> None:
    section = privacy_section(_record())
    assert section["rounds"] == [0, 1, 2, 3]
    assert section["epsilon"] == EPSILONS
    assert (
        section["final"]["cleveland"]["epsilon"] == 1.8
        and section["final"]["cleveland"]["rounds_trained"] == 4
    )
    assert section["final"]["hungary"] == {**_ledger(1.3), "rounds_trained": 2}
    assert section["stopped"] == [{"site": "hungary", "round": 2, "reason": REASON}]  # first refusal only


def test_no_ledger_no_section() -> None:
    record = {"rounds": [{"round": 0, "sites": {"a": {"n_train": 3}}}], "failures": []}
    assert privacy_section(record) is None and privacy_markdown(None) == ""


def test_markdown_and_plot(tmp_path: Path) -> None:
    section = privacy_section(_record())
    text = privacy_markdown(section)
    assert "| cleveland | 1.800 | 0.0005 | 1.100 | 1 | 0.080 | 4 |" in text
    assert "| 2 | 1.50 | – |" in text
    assert f"- hungary declined round 2: {REASON}" in text
    png = plot_privacy(section, tmp_path / "privacy.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_report_includes_the_privacy_section(tmp_path: Path) -> None:
    report = build_report("heart_dp", _record(), {})
    assert report["privacy"]["stopped"][0]["site"] == "hungary"
    paths = write_report(report, tmp_path)
    assert tmp_path / "privacy.png" in paths
    assert "## Differential privacy (DP-SGD at each site)" in (tmp_path / "report.md").read_text()
