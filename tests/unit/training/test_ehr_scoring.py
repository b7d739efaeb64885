"""Scoring of the missing-data benchmark: who a complete-case model can score, AUCs on subsets,
client averages over hospitals with an AUC, and the aims' verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedhealth_tools.training.ehr_scoring import (
    aim_close,
    aim_gain,
    client_average,
    complete_case_mask,
    subset_auc,
    summarize,
)

FRAME = pd.DataFrame(
    {
        "age": [63.0, np.nan, 41.0, 57.0],
        "cp": ["asymptomatic", "non_anginal", None, "typical_angina"],
        "ca": [np.nan, np.nan, np.nan, 1.0],
    }
)

# (columns, expected mask): a row is scorable only with a value in every one of the model's features.
MASK_CASES = [
    (["age"], [True, False, True, True]),
    (["cp"], [True, True, False, True]),
    (["age", "cp"], [True, False, False, True]),
    (["age", "cp", "ca"], [False, False, False, True]),
]


@pytest.mark.parametrize(("columns", "expected"), MASK_CASES)
def test_complete_case_mask_keeps_rows_with_every_feature(columns: list[str], expected: list[bool]) -> None:
    assert complete_case_mask(FRAME, columns).tolist() == expected


def test_complete_case_mask_names_an_absent_column_and_needs_one() -> None:
    with pytest.raises(ValueError, match=r"no column\(s\) \['thal'\]"):
        complete_case_mask(FRAME, ["age", "thal"])
    with pytest.raises(ValueError, match="at least one feature column"):
        complete_case_mask(FRAME, [])


def test_subset_auc_scores_only_the_masked_rows() -> None:
    labels = np.array([0, 1, 0, 1, 1])
    probs = np.array([0.1, 0.9, 0.95, 0.2, 0.8])
    assert subset_auc(labels, probs, np.ones(5, bool)) == pytest.approx(0.5)
    # without rows 2 and 3 (the two ranked wrong) every positive outranks the negative
    assert subset_auc(labels, probs, np.array([1, 1, 0, 0, 1], bool)) == 1.0


def test_subset_auc_is_none_for_one_class_or_no_row_and_checks_lengths() -> None:
    labels, probs = np.array([1, 1, 0]), np.array([0.2, 0.3, 0.4])
    assert subset_auc(labels, probs, np.array([1, 1, 0], bool)) is None
    assert subset_auc(labels, probs, np.zeros(3, bool)) is None
    with pytest.raises(ValueError, match=r"labels \(3\), probs \(2\) and mask \(3\)"):
        subset_auc(labels, probs[:2], np.ones(3, bool))


def test_client_average_leaves_out_hospitals_without_an_auc() -> None:
    assert client_average({"a": 0.8, "b": None, "c": 0.6}) == pytest.approx(0.7)
    assert client_average({"a": None}) is None


def test_summarize_gives_mean_and_sample_sd_over_seeds() -> None:
    runs = [{"a": 0.8, "b": 0.6, "c": None}, {"a": 0.9, "b": 0.7, "c": None}]
    out = summarize(runs, ["a", "b", "c"])
    assert out["client_avg_auc_per_seed"] == pytest.approx([0.7, 0.8])
    assert out["client_avg_auc"] == pytest.approx(0.75)
    assert out["client_avg_auc_sd"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert out["per_site_auc"] == pytest.approx({"a": 0.85, "b": 0.65, "c": None})
    assert out["sites_without_auc"] == ["c"]
    assert summarize(runs[:1], ["a"])["client_avg_auc_sd"] == 0.0
    with pytest.raises(ValueError, match="no seed"):
        summarize([], ["a"])


# (new, old, met on the client average, no hospital worse by more than 0.01, worst)
GAIN_CASES = [
    ({"a": 0.90, "b": 0.80}, {"a": 0.88, "b": 0.78}, True, True, "a"),
    ({"a": 0.90, "b": 0.80}, {"a": 0.895, "b": 0.795}, False, True, "a"),
    ({"a": 0.95, "b": 0.76}, {"a": 0.90, "b": 0.78}, True, False, "b"),
]


@pytest.mark.parametrize(("new", "old", "met", "no_worse", "worst"), GAIN_CASES)
def test_aim_gain(new: dict, old: dict, met: bool, no_worse: bool, worst: str) -> None:
    out = aim_gain(new, old, margin=0.01, tolerance=0.01)
    assert out["client_avg_met"] is met
    assert out["no_site_worse_met"] is no_worse
    assert out["worst_site"] == worst
    assert out["client_avg_gain"] == pytest.approx(np.mean([new[s] - old[s] for s in new]))


def test_aim_gain_leaves_out_a_hospital_without_an_auc_and_names_it() -> None:
    out = aim_gain({"a": 0.9, "b": 0.5}, {"a": 0.85, "b": None}, margin=0.01, tolerance=0.01)
    assert out["per_site_gain"] == pytest.approx({"a": 0.05})
    assert out["sites_left_out"] == ["b"]


@pytest.mark.parametrize(
    ("federated", "pooled", "met"), [(0.80, 0.804, True), (0.80, 0.806, False), (0.81, 0.80, True)]
)
def test_aim_close_allows_federated_at_most_the_tolerance_below_pooled(
    federated: float, pooled: float, met: bool
) -> None:
    out = aim_close(federated, pooled, tolerance=0.005)
    assert out["met"] is met
    assert out["gap"] == pytest.approx(pooled - federated)
    assert aim_close(None, 0.8, tolerance=0.005) == {"gap": None, "met": False}
