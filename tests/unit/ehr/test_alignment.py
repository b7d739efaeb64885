"""The server's alignment: the model's features, imputation and scaling, from the sites' counts only.

Three hospitals of 40 patients (``ehr_cases.three_sites``): only site-a has 3 non_anginal patients,
site-c never measures cholesterol.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from ehr_cases import dictionary, three_sites

from fedhealth.ehr.alignment import AlignmentPolicy, align
from fedhealth.ehr.harmonize import Harmonized
from fedhealth.ehr.profile import histogram_edges, site_profile

CP_COLUMNS = ["cp=atypical_angina", "cp=asymptomatic"]
WITHOUT_CHOL = {"age": ["age"], "sex": ["sex"], "cp": CP_COLUMNS}
# (policy changes, feature -> its model columns; absent: dropped)
POLICIES = [
    ({}, {**WITHOUT_CHOL, "chol": ["chol", "chol_missing"]}),
    ({"indicators": False}, {**WITHOUT_CHOL, "chol": ["chol"]}),
    ({"mode": "intersection"}, WITHOUT_CHOL),
    ({"min_sites_with_feature": 3}, WITHOUT_CHOL),
    ({"max_missing_fraction": 0.3}, WITHOUT_CHOL),
    (
        {"min_cell": 3},  # the 3 non_anginal patients are released and kept
        {
            **WITHOUT_CHOL,
            "cp": ["cp=atypical_angina", "cp=non_anginal", "cp=asymptomatic"],
            "chol": ["chol", "chol_missing"],
        },
    ),
]
# (policy changes, the reason cholesterol is dropped)
CHOL_DROPPED = [
    ({"mode": "intersection"}, "recorded at 2 of 3 sites (mode intersection)"),
    ({"min_sites_with_feature": 3}, "recorded at 2 of 3 sites (min_sites_with_feature 3)"),
    ({"max_missing_fraction": 0.3}, "missing for 33% of patients (max_missing_fraction 0.3)"),
]
# (policy arguments, the exact error)
BAD_POLICIES = [
    ({"mode": "outer"}, "mode must be one of ('union', 'intersection'), not 'outer'."),
    ({"imputation": "mode"}, "imputation must be one of ('mean', 'median', 'none'), not 'mode'."),
    ({"max_missing_fraction": 1.5}, "max_missing_fraction must lie in [0, 1]."),
    ({"min_sites_with_feature": 0}, "min_sites_with_feature and min_cell must be at least 1."),
    ({"min_cell": 0}, "min_sites_with_feature and min_cell must be at least 1."),
]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Harmonized]:
    return three_sites(tmp_path_factory.mktemp("sites"))


def _profiles(sites: dict[str, Harmonized], min_cell: int = 5) -> dict[str, dict]:
    return {name: site_profile(h.features, dictionary(), min_cell=min_cell) for name, h in sites.items()}


def _pooled(sites: dict[str, Harmonized]) -> pd.DataFrame:
    return pd.concat([h.features for h in sites.values()], ignore_index=True)


@pytest.mark.parametrize(("changes", "kept"), POLICIES)
def test_the_policy_decides_the_models_columns(sites: dict, changes: dict, kept: dict) -> None:
    policy = AlignmentPolicy(**changes)
    schema = align(_profiles(sites, policy.min_cell), dictionary(), policy)
    assert {f["name"]: f["columns"] for f in schema["features"]} == kept
    assert schema["columns"] == [c for cols in kept.values() for c in cols]
    assert len(schema["mean"]) == len(schema["std"]) == len(schema["columns"])
    assert [d["name"] for d in schema["dropped"]] == [
        n for n in ("age", "sex", "cp", "chol") if n not in kept
    ]


@pytest.mark.parametrize(("changes", "reason"), CHOL_DROPPED)
def test_a_dropped_feature_says_why(sites: dict, changes: dict, reason: str) -> None:
    schema = align(_profiles(sites), dictionary(), AlignmentPolicy(**changes))
    assert schema["dropped"] == [{"name": "chol", "reason": reason}]


def test_union_keeps_a_feature_one_site_lacks_with_an_indicator(sites: dict) -> None:
    schema = align(_profiles(sites), dictionary(), AlignmentPolicy())
    pooled = _pooled(sites)
    chol = next(f for f in schema["features"] if f["name"] == "chol")
    measured = pooled["chol"].dropna().to_numpy()
    assert len(measured) == 80
    assert chol["indicator"] is True and chol["impute"] == pytest.approx(measured.mean())
    stats = dict(zip(schema["columns"], zip(schema["mean"], schema["std"], strict=True), strict=True))
    assert stats["chol"][0] == pytest.approx(measured.mean())
    assert stats["chol"][1] == pytest.approx(measured.std(ddof=1))
    assert stats["chol_missing"][0] == pytest.approx(1 / 3)
    assert stats["chol_missing"][1] == pytest.approx(math.sqrt(2 / 9))
    age = pooled["age"].to_numpy()
    assert stats["age"][0] == pytest.approx(age.mean()) and stats["age"][1] == pytest.approx(age.std(ddof=1))
    assert schema["sites"]["site-c"]["features"]["chol"] == {"present": 0, "missing": 40}
    assert schema["sites"]["site-a"]["rows"] == 40 and schema["rows"] == 120
    assert schema["policy"] == {
        "mode": "union",
        "min_sites_with_feature": 2,
        "max_missing_fraction": 0.9,
        "indicators": True,
        "imputation": "mean",
        "min_cell": 5,
    }


def test_a_category_one_site_saw_three_times_is_dropped_without_its_count(sites: dict) -> None:
    profiles = _profiles(sites)
    assert [p["features"]["cp"]["categories"]["non_anginal"] for p in profiles.values()] == [None, 0, 0]
    schema = align(profiles, dictionary(), AlignmentPolicy())
    cp = next(f for f in schema["features"] if f["name"] == "cp")
    assert cp["categories"] == ["typical_angina", "atypical_angina", "asymptomatic"]
    released = {
        c: sum(p["features"]["cp"]["categories"][c] or 0 for p in profiles.values()) for c in cp["categories"]
    }
    # site-a's 12 atypical_angina go with its 3 non_anginal (secondary suppression)
    assert released == {"typical_angina": 41, "atypical_angina": 26, "asymptomatic": 38}
    i = schema["columns"].index("cp=atypical_angina")
    assert schema["mean"][i] == pytest.approx(26 / 105)


def test_median_imputation_lies_within_one_bin_of_the_true_median(sites: dict) -> None:
    policy = AlignmentPolicy(imputation="median", min_cell=1)  # every histogram cell released
    schema = align(_profiles(sites, min_cell=1), dictionary(), policy)
    impute = {f["name"]: f.get("impute") for f in schema["features"]}
    pooled = _pooled(sites)
    for name in ("age", "chol"):
        edges = histogram_edges(dictionary().feature(name))
        true = float(np.median(pooled[name].dropna()))
        assert abs(impute[name] - true) <= edges[1] - edges[0], name
    assert impute["sex"] == pytest.approx(pooled["sex"].mean())  # a binary feature imputes its mean


def test_suppressed_histogram_cells_count_as_empty_in_the_median(sites: dict) -> None:
    """40 patients over 12 age bins leave most cells below 5: the median comes from the released ones."""
    profiles = _profiles(sites)
    released = [c for p in profiles.values() for c in p["features"]["age"]["histogram"] if c]
    assert sum(released) == 43  # of 120 patients
    schema = align(profiles, dictionary(), AlignmentPolicy(imputation="median"))
    age = next(f for f in schema["features"] if f["name"] == "age")
    assert age["impute"] == pytest.approx(60.1038, abs=1e-3)  # the true median is 54


def test_a_site_that_profiled_another_dictionary_is_named(sites: dict) -> None:
    profiles = _profiles(sites)
    profiles["site-b"] = {**profiles["site-b"], "dictionary": dictionary(version=2).fingerprint()}
    with pytest.raises(ValueError) as err:
        align(profiles, dictionary(), AlignmentPolicy())
    assert str(err.value) == "site(s) ['site-b'] profiled another data dictionary than the job's"


def test_no_profile_or_no_surviving_feature_is_an_error(sites: dict) -> None:
    with pytest.raises(ValueError) as err:
        align({}, dictionary(), AlignmentPolicy())
    assert str(err.value) == "no site sent its profile; nothing to align"
    with pytest.raises(ValueError) as err:
        align(_profiles(sites), dictionary(), AlignmentPolicy(min_sites_with_feature=4))
    assert str(err.value) == "no feature of the dictionary survives the alignment policy"


def test_a_feature_without_variation_is_dropped(sites: dict) -> None:
    profiles = _profiles(sites)
    for p in profiles.values():
        p["features"]["sex"].update({"sum": 40.0, "sumsq": 40.0})  # every patient male
    schema = align(profiles, dictionary(), AlignmentPolicy())
    assert schema["dropped"] == [{"name": "sex", "reason": "no variation among released counts"}]


@pytest.mark.parametrize(("arguments", "message"), BAD_POLICIES)
def test_a_bad_policy_is_refused(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        AlignmentPolicy(**arguments)
    assert str(err.value) == message
