"""The UCI Heart Disease CSV, preprocessed and split exactly as FLamby's Fed-Heart-Disease."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fedhealth.constants import HEART_SITES
from fedhealth.data.site_data import RAW_COLUMNS, TARGET
from fedhealth_tools.data.heart_source import MISLABELLED_ID, SiteSplit, default_csv_path, load_uci

# site -> (rows after preprocessing, train, test); FLamby: 740 patients, 486 for training.
SIZES = {
    "cleveland": (303, 199, 104),
    "hungary": (261, 172, 89),
    "switzerland": (46, 30, 16),
    "va_long_beach": (130, 85, 45),
}
# site -> raw rows in the CSV after moving row id 304 from Cleveland to Hungary.
RAW_ROWS = {"cleveland": 303, "hungary": 294}
# Columns whose absence load_uci must name (the CSV spells thalach as "thalch").
DROPPED_COLUMNS = ["chol", "thalch", "dataset", "num"]


@pytest.mark.parametrize(("site", "sizes"), SIZES.items())
def test_site_sizes_match_flamby(heart_splits: dict[str, SiteSplit], site: str, sizes: tuple) -> None:
    total, n_train, n_test = sizes
    split = heart_splits[site]
    assert split.site == site
    assert (len(split.train), len(split.test)) == (n_train, n_test)
    assert len(split.train) + len(split.test) == total


def test_totals_and_site_order(heart_splits: dict[str, SiteSplit]) -> None:
    assert tuple(heart_splits) == HEART_SITES
    assert sum(len(s.train) + len(s.test) for s in heart_splits.values()) == 740
    assert sum(len(s.train) for s in heart_splits.values()) == 486


@pytest.mark.parametrize("site", SIZES)
def test_splits_hold_binary_labels_and_no_missing_values(
    heart_splits: dict[str, SiteSplit], site: str
) -> None:
    for frame in (heart_splits[site].train, heart_splits[site].test):
        assert list(frame.columns) == [*RAW_COLUMNS, TARGET]
        assert set(frame[TARGET].unique()) <= {0, 1}
        assert not frame.isna().any().any()


def test_split_is_reproducible(heart_splits: dict[str, SiteSplit]) -> None:
    from fedhealth_tools.data.heart_source import load_heart_sites

    again = load_heart_sites()
    for site, split in heart_splits.items():
        pd.testing.assert_frame_equal(split.train, again[site].train)
        pd.testing.assert_frame_equal(split.test, again[site].test)


def test_row_304_is_moved_to_hungary() -> None:
    raw = pd.read_csv(default_csv_path())
    assert raw.loc[raw["id"] == MISLABELLED_ID, "dataset"].tolist() == ["Cleveland"]  # the CSV's label
    df = load_uci()
    assert len(df) == 920
    assert df.loc[raw["id"] == MISLABELLED_ID, "site"].tolist() == ["hungary"]
    for site, n in RAW_ROWS.items():
        assert (df["site"] == site).sum() == n


def test_load_uci_codes_categories() -> None:
    df = load_uci()
    assert set(df["cp"].dropna().unique()) == {1.0, 2.0, 3.0, 4.0}
    assert set(df["restecg"].dropna().unique()) == {0.0, 1.0, 2.0}
    assert set(df["sex"].unique()) == {0.0, 1.0}
    assert set(df["site"].unique()) == set(HEART_SITES)


@pytest.mark.parametrize("column", DROPPED_COLUMNS)
def test_load_uci_names_a_missing_column(tmp_path: Path, column: str) -> None:
    path = tmp_path / "heart.csv"
    pd.read_csv(default_csv_path()).head(20).drop(columns=column).to_csv(path, index=False)
    with pytest.raises(ValueError, match=rf"heart\.csv: missing column\(s\) \['{column}'\]"):
        load_uci(path)
