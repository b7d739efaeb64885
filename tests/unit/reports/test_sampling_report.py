"""Client sampling in the run report: "not sampled" is not "missed", and the plan is stated."""

from __future__ import annotations

import pytest

from fedhealth.reports.run_report import build_report, participation_markdown, to_markdown
from fedhealth.reports.sampling_report import sampling_section
from fedhealth.reports.site_report import participation

SITES = ["a", "b", "c", "d"]
# round -> (sampled, sites whose update arrived); round 3 drew nobody (Poisson), round 4 had 2 connected.
DRAWS = {
    0: (["a", "b", "c"], ["a", "b", "c"]),
    1: (["a", "b", "d"], ["a", "d"]),  # b sampled, no result: missed
    2: (["b", "c", "d"], ["b", "c", "d"]),
    3: ([], []),
    4: (["a", "c"], ["a", "c"]),
}
# site -> expected participation row
EXPECTED = {
    "a": {
        "rounds": 3,
        "missed_rounds": [],
        "rejected_rounds": [],
        "sampled": 3,
        "not_sampled_rounds": [2, 3],
    },
    "b": {
        "rounds": 1,
        "missed_rounds": [1],
        "rejected_rounds": [2],
        "sampled": 3,
        "not_sampled_rounds": [3, 4],
    },
    "c": {
        "rounds": 3,
        "missed_rounds": [],
        "rejected_rounds": [],
        "sampled": 3,
        "not_sampled_rounds": [1, 3],
    },
    "d": {
        "rounds": 2,
        "missed_rounds": [],
        "rejected_rounds": [],
        "sampled": 2,
        "not_sampled_rounds": [0, 3, 4],
    },
}


def _record() -> dict:
    draws = [
        {
            "round": r,
            "sampled": sampled,
            "connected": SITES if r != 4 else ["a", "c"],
            "rate": 0.75 if r != 4 else 1.0,
            "short": r == 4,
        }
        for r, (sampled, _) in DRAWS.items()
    ]
    rounds = [
        {"round": r, "sites": {s: {"train_loss": 0.5, "n_train": 10, "n_test": 5} for s in sent}}
        for r, (_, sent) in DRAWS.items()
        if sent
    ]
    return {
        "job_id": "j",
        "rounds": rounds,
        "sites": SITES,
        "rejected_updates": [{"site": "b", "round": 2, "reason": "NaN"}],
        "sampling": {"mode": "poisson", "k": 3, "n": 4, "rate": 0.75, "seeded": False, "rounds": draws},
        "failures": [],
    }


@pytest.mark.parametrize("site", SITES)
def test_not_sampled_rounds_are_neither_missed_nor_counted(site: str) -> None:
    row = participation(_record())[site]
    assert {k: row[k] for k in EXPECTED[site]} == EXPECTED[site]
    assert row["rate"] == pytest.approx(EXPECTED[site]["rounds"] / 5)  # of all 5 rounds, the empty one too
    assert row["rate_when_sampled"] == pytest.approx(EXPECTED[site]["rounds"] / EXPECTED[site]["sampled"])


def test_without_sampling_the_rows_are_as_before() -> None:
    record = {k: v for k, v in _record().items() if k != "sampling"}
    rows = participation(record)
    assert rows["d"] == {
        "rounds": 2,
        "rate": 0.5,
        "missed_rounds": [0, 4],
        "late_rounds": [],
        "rejected_rounds": [],
    }


def test_a_sampled_site_whose_result_came_late_is_late_not_missed() -> None:
    record = _record()
    record["late_results"] = [
        {"site": "b", "task": "train", "round": 1, "during_round": 2, "used": False, "reason": "too late"}
    ]
    row = participation(record)["b"]
    assert (row["rounds"], row["missed_rounds"], row["late_rounds"], row["not_sampled_rounds"]) == (
        1,
        [],
        [1],
        [3, 4],
    )
    assert row["sampled"] == 3 and row["rate_when_sampled"] == pytest.approx(1 / 3)
    text = participation_markdown(build_report("job", record, {}))
    assert "- b: train of round 1, arrived during round 2 (too late)" in text


def test_the_section_names_the_plan_the_short_and_the_empty_rounds() -> None:
    section = sampling_section(_record())
    assert {k: section[k] for k in ("mode", "k", "n", "rate", "seeded", "rounds")} == {
        "mode": "poisson",
        "k": 3,
        "n": 4,
        "rate": 0.75,
        "seeded": False,
        "rounds": 5,
    }
    assert section["short_rounds"] == [{"round": 4, "connected": 2, "rate": 1.0}]
    assert section["empty_rounds"] == [3]
    assert section["draws"][1] == {"round": 1, "sampled": ["a", "b", "d"]}
    assert sampling_section({"rounds": []}) is None


def test_the_report_tables_every_site_and_states_the_rate() -> None:
    report = build_report("heart_client_dp_sampled", _record(), {})
    text = participation_markdown(report)
    assert (
        "Client sampling: 3 of 4 sites a round (poisson, q = 0.750, a fresh secret seed), 5 rounds." in text
    )
    assert "| b | 3 | 1 | 1 | 2 | 3, 4 |" in text
    assert "| d | 2 | 2 | – | – | 0, 3, 4 |" in text
    assert "- round 4: 2 connected, each taken with probability 1.000" in text
    assert "Rounds whose draw took no site: 3." in text
    assert text in to_markdown(report)
