"""What a site sends before training: counts, sums and histograms, every small cell suppressed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ehr_cases import dictionary, harmonized, site_rows

from fedhealth.ehr.profile import HISTOGRAM_BINS, histogram_edges, site_profile, suppress

# (count, min_cell, what is sent)
SUPPRESS = [(0, 5, 0), (1, 5, None), (4, 5, None), (5, 5, 5), (12, 5, 12), (9, 10, None), (10, 10, 10)]


def _released_cells(profile: dict) -> list[int]:
    """Every cell count the profile releases (categories, histograms, problems).

    ``present`` and ``missing`` are released as they are: ``rows`` is released, so one gives the other.
    """
    out = [v for v in profile["problems"].values() if v is not None]
    for entry in profile["features"].values():
        out += [c for c in entry.get("categories", {}).values() if c is not None]
        out += [c for c in entry.get("histogram") or [] if c is not None]
    return out


@pytest.mark.parametrize(("count", "min_cell", "sent"), SUPPRESS)
def test_a_small_cell_is_sent_as_null(count: int, min_cell: int, sent: int | None) -> None:
    assert suppress(count, min_cell) == sent


def test_histogram_edges_split_the_plausible_range_in_twenty() -> None:
    edges = histogram_edges(dictionary().feature("chol"))
    assert len(edges) == HISTOGRAM_BINS + 1 == 21
    assert edges[0] == 80 and edges[-1] == 700 and edges[1] - edges[0] == pytest.approx(31.0)
    assert histogram_edges(dictionary().feature("sex")) is None


def test_a_profile_sends_counts_sums_and_histograms(tmp_path: Path) -> None:
    h = harmonized(tmp_path, site_rows(40, seed=7))
    profile = site_profile(h.features, dictionary(), min_cell=5, problems={"out_of_range": 6})
    assert profile["dictionary"] == dictionary().fingerprint()
    assert (profile["rows"], profile["min_cell"], profile["problems"]) == (40, 5, {"out_of_range": 6})
    age = h.features["age"].to_numpy()
    entry = profile["features"]["age"]
    assert (entry["present"], entry["missing"]) == (40, 0)
    assert entry["sum"] == pytest.approx(age.sum()) and entry["sumsq"] == pytest.approx((age**2).sum())
    exact, _ = np.histogram(age, bins=histogram_edges(dictionary().feature("age")))
    assert entry["histogram"] == [suppress(int(c), 5) for c in exact]
    assert sum(c or 0 for c in entry["histogram"]) <= 40 and len(entry["histogram"]) == 20
    sex = profile["features"]["sex"]
    assert sex["sum"] == h.features["sex"].sum() == sex["sumsq"] and "histogram" not in sex
    assert profile["features"]["cp"]["categories"] == {
        "typical_angina": 14,
        "atypical_angina": 13,
        "non_anginal": 0,
        "asymptomatic": 13,
    }
    assert json.loads(json.dumps(profile)) == profile  # plain JSON


def test_a_feature_missing_for_every_patient_sends_present_zero(tmp_path: Path) -> None:
    h = harmonized(tmp_path, site_rows(40, seed=3, chol=False))
    chol = site_profile(h.features, dictionary(), min_cell=5)["features"]["chol"]
    assert chol == {"present": 0, "missing": 40, "sum": None, "sumsq": None, "histogram": None}


def test_a_category_seen_three_times_is_suppressed_and_cannot_be_recovered(tmp_path: Path) -> None:
    h = harmonized(tmp_path, site_rows(40, seed=1, rare=3))
    assert (h.features["cp"].value_counts().to_dict()) == {
        "typical_angina": 13,
        "atypical_angina": 12,
        "asymptomatic": 12,
        "non_anginal": 3,
    }
    profile = site_profile(
        h.features, dictionary(), min_cell=5, problems={"out_of_range": 3, "non_numeric": 1}
    )
    cp = profile["features"]["cp"]
    # secondary suppression: the smallest other cell goes too, so present - released is not the 3
    assert cp["categories"] == {
        "typical_angina": 13,
        "atypical_angina": None,
        "non_anginal": None,
        "asymptomatic": 12,
    }
    assert cp["present"] - sum(c for c in cp["categories"].values() if c) == 15
    assert profile["problems"] == {"non_numeric": None, "out_of_range": None}
    cells = _released_cells(profile)
    assert cells and not [c for c in cells if 0 < c < 5]
    age = profile["features"]["age"]
    assert age["histogram"].count(None) != 1  # a lone suppressed bin would be the total minus the rest


def test_a_site_with_few_patients_sends_no_sums(tmp_path: Path) -> None:
    rows = site_rows(12, seed=4)
    for row in rows[3:]:
        row[1] = "NA"  # age recorded for 3 patients only
    profile = site_profile(harmonized(tmp_path, rows).features, dictionary(), min_cell=5)
    age = profile["features"]["age"]
    assert (age["present"], age["missing"], age["sum"], age["sumsq"], age["histogram"]) == (
        3,
        9,
        None,
        None,
        None,
    )


def test_the_floor_applies_to_every_count(tmp_path: Path) -> None:
    h = harmonized(tmp_path, site_rows(40, seed=7))
    profile = site_profile(h.features, dictionary(), min_cell=14)
    assert profile["min_cell"] == 14
    assert profile["features"]["cp"]["categories"] == {
        "typical_angina": 14,
        "atypical_angina": None,
        "non_anginal": 0,
        "asymptomatic": None,
    }
    assert not [c for c in _released_cells(profile) if 0 < c < 14]


def test_fewer_rows_than_the_smallest_cell_release_nothing(tmp_path: Path) -> None:
    h = harmonized(tmp_path, site_rows(4, seed=5))
    with pytest.raises(ValueError) as err:
        site_profile(h.features, dictionary(), min_cell=5)
    assert str(err.value) == (
        "this site has 4 training row(s), fewer than the smallest cell it may release (5)"
    )
