"""All 920 heart patients in canonical coding: FLamby's 740 rows keep FLamby's split exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedhealth.constants import HEART_SITES
from fedhealth.data.site_data import RAW_COLUMNS, TARGET
from fedhealth_tools.data.heart_canonical import (
    FEATURES,
    CanonicalSplit,
    canonical_sites,
    heart_dictionary,
    load_canonical,
)
from fedhealth_tools.data.heart_canonical import (
    TARGET as TARGET_NAME,
)
from fedhealth_tools.data.heart_source import SiteSplit, load_heart_sites

# site -> (train, test, FLamby train, FLamby test); FLamby's are heart_source's sizes.
SIZES = {
    "cleveland": (199, 104, 199, 104),
    "hungary": (193, 101, 172, 89),
    "switzerland": (80, 43, 30, 16),
    "va_long_beach": (131, 69, 85, 45),
}
# category names back to the UCI codes heart_source uses
CODES = {
    f["name"]: {c: float(codes[0]) for c, codes in f["codes"].items()}
    for f in heart_dictionary()["features"]
    if f["kind"] == "categorical"
}


@pytest.fixture(scope="module")
def sites() -> dict[str, CanonicalSplit]:
    return canonical_sites()


@pytest.fixture(scope="module")
def flamby() -> dict[str, SiteSplit]:
    return load_heart_sites()


def test_all_920_patients_and_740_of_them_flamby() -> None:
    df = load_canonical()
    assert len(df) == 920 and int(df["flamby"].sum()) == 740
    assert df.groupby("site").size().to_dict() == {
        "cleveland": 303,
        "hungary": 294,
        "switzerland": 123,
        "va_long_beach": 200,
    }
    assert df["patient_id"].is_unique
    assert df["patient_id"].iloc[0] == "CLE-0001" and df["patient_id"].iloc[303] == "HUN-0001"


@pytest.mark.parametrize(("site", "sizes"), SIZES.items())
def test_site_sizes(sites: dict[str, CanonicalSplit], site: str, sizes: tuple[int, int, int, int]) -> None:
    split = sites[site]
    got = (
        len(split.train),
        len(split.test),
        int(split.train["flamby"].sum()),
        int(split.test["flamby"].sum()),
    )
    assert got == sizes
    assert set(split.train["patient_id"]).isdisjoint(split.test["patient_id"])
    assert list(split.train.columns) == ["patient_id", *FEATURES, "num", "heart_disease", "flamby"]


@pytest.mark.parametrize("site", HEART_SITES)
@pytest.mark.parametrize("part", ["train", "test"])
def test_flamby_rows_are_flambys_split_row_for_row(
    sites: dict[str, CanonicalSplit], flamby: dict[str, SiteSplit], site: str, part: str
) -> None:
    ours = getattr(sites[site], part)
    ours = ours[ours["flamby"]].reset_index(drop=True)
    theirs = getattr(flamby[site], part)
    as_codes = ours[list(RAW_COLUMNS)].copy()
    for feature in ("cp", "restecg"):
        as_codes[feature] = as_codes[feature].map(CODES[feature]).astype("float64")
    pd.testing.assert_frame_equal(as_codes, theirs[list(RAW_COLUMNS)], check_dtype=False)
    np.testing.assert_array_equal(ours["heart_disease"].to_numpy(), theirs[TARGET].to_numpy())


def test_dropped_rows_have_a_missing_value_and_the_real_missingness(sites: dict[str, CanonicalSplit]) -> None:
    every = pd.concat([pd.concat([s.train, s.test]).assign(site=n) for n, s in sites.items()])
    dropped = every[~every["flamby"]]
    assert len(dropped) == 180
    assert dropped[list(RAW_COLUMNS)].isna().any(axis=1).all()
    ca_missing = every.groupby("site")["ca"].apply(lambda s: s.isna().mean())
    assert ca_missing["cleveland"] < 0.02 and ca_missing.drop("cleveland").min() > 0.95
    assert (every[every["site"] == "switzerland"]["chol"] == 0).all()  # recorded 0: "not measured"


def test_categories_are_the_dictionarys_names(sites: dict[str, CanonicalSplit]) -> None:
    features = {f["name"]: f for f in heart_dictionary()["features"]}
    every = pd.concat([pd.concat([s.train, s.test]) for s in sites.values()])
    for name, values in CODES.items():
        assert set(every[name].dropna()) == set(features[name]["categories"]) == set(values)
    for name in ("sex", "fbs", "exang"):
        assert set(every[name].dropna()) == {0.0, 1.0}


def test_the_features_are_the_dictionarys_in_its_order() -> None:
    assert [f["name"] for f in heart_dictionary()["features"]] == list(FEATURES)
    assert len(FEATURES) == 13 and heart_dictionary()["target"]["name"] == TARGET_NAME
