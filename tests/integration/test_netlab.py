"""The federation over a network: each host in its own namespace, production kits, shaped links.

Real FLARE server, sites and admin, each in a Linux network namespace of its own, provisioned with
the server at its lab address; hospital links shaped by the ``consortium`` lab of ``netlab.json``
(campus 1 Gbit/s 5 ms, regional 50 Mbit/s 30 ms, rural 20 Mbit/s 60 ms 0.5 % loss). Skipped, with
the reason, only where this machine cannot create a namespace with a shaped TAP device.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhealth_tools.netlab.lab import LinkCut, run_in_lab
from fedhealth_tools.netlab.topology import namespaces_available
from fedhealth_tools.poc.variants import job_variant

ROOT = Path(__file__).resolve().parents[2]
WHY_NOT = namespaces_available()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(WHY_NOT is not None, reason=f"no network lab: {WHY_NOT}")]

RURAL = "va_long_beach"
# (profile, RTT bounds in ms: 2 x delay +- jitter, plus the server's 2 x 0.5 ms; upload ceiling in Mbit/s)
EXPECTED_LINKS = {
    "cleveland": ("campus", 10.0, 25.0, 1000.0),
    "switzerland": ("campus", 10.0, 25.0, 1000.0),
    "hungary": ("regional", 55.0, 80.0, 50.0),
    RURAL: ("rural", 110.0, 150.0, 20.0),
}


def test_four_hospitals_train_three_rounds_of_heart_over_shaped_links(tmp_path: Path) -> None:
    job = job_variant(ROOT / "jobs" / "heart_fedavg", tmp_path / "jobs" / "heart_fedavg", rounds=3)
    run = run_in_lab(
        job, workspace=tmp_path / "lab", project_file=ROOT / "project.yml", lab="consortium", probe=True
    )
    assert run.status == "FINISHED:COMPLETED"
    assert run.report["rounds"] == 3
    for site, (profile, rtt_lo, rtt_hi, ceiling) in EXPECTED_LINKS.items():
        probe = run.probes[site]
        assert probe["profile"] == profile == run.profiles[site]
        assert rtt_lo <= probe["rtt_ms"] <= rtt_hi, (site, probe)
        assert 0.5 < probe["goodput_mbit"] <= ceiling * 1.05, (site, probe)
        # every site's model traffic crossed its own shaped link, both ways
        assert run.links[site]["up"]["bytes"] > 50_000 and run.links[site]["down"]["bytes"] > 50_000
        assert run.report["participation"][site]["missed_rounds"] == []
    # the rural link is the slowest: its measured goodput is below the regional one's
    assert run.probes[RURAL]["goodput_mbit"] < run.probes["hungary"]["goodput_mbit"]


def test_a_cut_link_costs_the_site_rounds_and_the_job_completes(tmp_path: Path) -> None:
    rounds = 14
    job = job_variant(
        ROOT / "jobs" / "heart_fedprox",
        tmp_path / "jobs" / "heart_fedprox",
        rounds=rounds,
        min_sites=3,
        wait_after_min_s=8,
        cse_timeout_s=90,
    )
    run = run_in_lab(
        job,
        workspace=tmp_path / "lab",
        project_file=ROOT / "project.yml",
        lab="consortium",
        cut=LinkCut(RURAL, at_round=1, seconds=60),
        timeout=600,
    )
    assert run.status == "FINISHED:COMPLETED"
    assert run.report["rounds"] == rounds
    (cut,) = run.cuts
    assert cut["site"] == RURAL and 59.5 <= cut["restored"] - cut["cut"] <= 62.0
    assert run.links[RURAL]["up"]["dropped"] > 0 and run.links[RURAL]["down"]["dropped"] > 0
    rural = run.report["participation"][RURAL]
    missed = rural["missed_rounds"]
    assert missed and min(missed) >= 1  # it trained before the cut
    # it rejoined after the link came back: its last round is not a missed one
    assert max(missed) < rounds - 1, rural
    assert rural["rounds"] >= 2
    for site in set(EXPECTED_LINKS) - {RURAL}:
        assert run.report["participation"][site]["missed_rounds"] == []
