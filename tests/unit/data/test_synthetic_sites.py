"""Synthetic many-site split: every patient row dealt once when there are enough, minimums kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedhealth.constants import HEART_DATASET_DIR
from fedhealth.data.site_data import load_site
from fedhealth.ehr.mapping import SiteMapping
from fedhealth.tasks.tabular import TabularTask
from fedhealth_tools.data.heart_canonical import heart_dictionary
from fedhealth_tools.data.synthetic_sites import site_names, synthetic_split, write_synthetic_sites

CASES = [  # n_sites, min_train, min_test
    (4, 8, 4),
    (16, 8, 4),
    (100, 8, 4),
]


def test_site_names_sort_in_order() -> None:
    assert site_names(3) == ["site-001", "site-002", "site-003"]
    assert site_names(1000)[-1] == "site-1000" and sorted(site_names(12)) == site_names(12)
    with pytest.raises(ValueError, match="at least 1"):
        site_names(0)


@pytest.mark.parametrize(("n_sites", "min_train", "min_test"), CASES)
def test_split_sizes(n_sites: int, min_train: int, min_test: int) -> None:
    split = synthetic_split(n_sites, min_train=min_train, min_test=min_test)
    assert list(split) == site_names(n_sites)
    trains = [len(tr) for tr, _ in split.values()]
    tests = [len(te) for _, te in split.values()]
    assert min(trains) >= min_train and min(tests) >= min_test
    if n_sites == 4:  # plenty of rows: every pooled row dealt exactly once (FLamby: 486 train, 254 test)
        assert sum(trains) == 486 and sum(tests) == 254
        assert max(trains) - min(trains) <= 1


def test_same_seed_same_split_other_seed_other_split() -> None:
    a, b, c = synthetic_split(8, seed=0), synthetic_split(8, seed=0), synthetic_split(8, seed=1)
    assert a["site-001"][0].equals(b["site-001"][0])
    assert not a["site-001"][0].equals(c["site-001"][0])


def test_written_sites_load_with_the_site_loader(tmp_path: Path) -> None:
    folders = write_synthetic_sites(tmp_path, 5)
    train, test = load_site(folders["site-003"])
    assert len(train) >= 8 and len(test) >= 4
    assert set(train.labels) <= {0.0, 1.0}


def test_written_sites_read_with_the_tabular_task_and_their_mapping(tmp_path: Path) -> None:
    """The heart jobs' task: every canonical column is its dictionary feature, every code is accepted."""
    folders = write_synthetic_sites(tmp_path, 5)
    folder = folders["site-003"] / HEART_DATASET_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["mapping.json", "test.csv", "train.csv"]
    assert "2.0" in (folder / "train.csv").read_text()  # codes as the float columns write them
    task = TabularTask(dictionary=heart_dictionary(), dataset=HEART_DATASET_DIR)
    mapping = SiteMapping.load(folder, label=HEART_DATASET_DIR)
    train, _ = load_site(folders["site-003"])
    table = task.harmonize_file(folder / "train.csv", mapping, label="heart_disease/train.csv")
    assert len(table) == len(train) and table.report.ignored_columns == []
    np.testing.assert_array_equal(table.labels, train.labels)
    counts = table.report.counts()
    assert counts.get("unknown_code", 0) == counts.get("not_binary", 0) == counts.get("non_numeric", 0) == 0
    assert sorted(table.report.absent_features) == ["ca", "slope", "thal"]  # not in FLamby's 10 columns
    features = table.features
    assert features["cp"].notna().all() and features["restecg"].notna().all()
    assert set(features["cp"]) <= {"typical_angina", "atypical_angina", "non_anginal", "asymptomatic"}
    assert features["age"].notna().all() and set(features["sex"]) <= {0.0, 1.0}


def test_default_sites_meet_the_sites_default_floor() -> None:
    """100 sites from 486 training patients: each is topped up to 16 rows, or it would decline every task."""
    split = synthetic_split(100)
    assert min(len(train) for train, _ in split.values()) == 16
