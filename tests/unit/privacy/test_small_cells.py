"""Small-cell suppression: the count rules, the site's setting and the metric release rules."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth import constants as C
from fedhealth.data.messages import SiteDataError
from fedhealth.ehr import profile
from fedhealth.privacy import small_cells
from fedhealth.privacy.released_metrics import (
    release_intervals,
    release_operating_point,
    release_round,
    release_validation,
)
from fedhealth.privacy.small_cells import (
    class_counts,
    effective_min_cell,
    site_min_cell,
    suppress,
    suppress_cells,
)
from fedhealth.training.site_metrics import evaluate_with_intervals

# (count, min_cell, released)
COUNTS = [(0, 5, 0), (1, 5, None), (4, 5, None), (5, 5, 5), (6, 5, 6), (4, 4, 4), (3, 4, None), (1, 1, 1)]
# (cells, released): one small cell takes the smallest positive other; zeros stay
TABLES = [
    ([10, 20, 30], [10, 20, 30]),
    ([3, 20, 30], [None, None, 30]),
    ([3, 0, 30], [None, 0, None]),
    ([3, 4, 30], [None, None, 30]),
    ([0, 0, 9], [0, 0, 9]),
    ([4], [None]),
    ([4, 0], [None, 0]),  # nothing left to take: the lone cell is suppressed, zero stays zero
    ([5, 4, 7, 6], [None, None, 7, 6]),
]
# (site setting or None, job's min_cell or None, effective minimum)
FLOORS = [(None, None, 5), (None, 3, 5), (None, 8, 8), (10, 5, 10), (3, 5, 5), (3, 2, 3), (1, 1, 1)]
BAD_SETTINGS = [0, -1, 2.5, "5", True, None, [5]]
SETTING_ERROR = f"local/{C.SITE_CONFIG_FILE}: '{C.SITE_MIN_CELL_KEY}' must be a whole number >= 1"
# (labels, (positive, negative) pairs)
LABELS = [
    (np.array([0.0, 1, 1, 0, 0]), [(2, 3)]),
    (np.array([0.0, 0, 0]), [(0, 3)]),
    (np.array([0, 2, 2, 1, 2]), [(1, 4), (1, 4), (3, 2)]),  # multi-class: one-vs-rest per class present
    (np.array([[1, 0], [1, 1], [0, 0]]), [(2, 1), (1, 2)]),  # multi-label: per column
]


@pytest.mark.parametrize(("count", "min_cell", "released"), COUNTS)
def test_a_count_below_the_minimum_is_suppressed_and_zero_stays(count, min_cell, released) -> None:
    assert suppress(count, min_cell) == released


@pytest.mark.parametrize(("cells", "released"), TABLES)
def test_secondary_suppression_of_a_lone_small_cell(cells, released) -> None:
    assert suppress_cells(cells, 5) == released


def test_the_ehr_profile_uses_the_one_implementation() -> None:
    assert profile.suppress is small_cells.suppress
    assert profile.suppress_cells is small_cells.suppress_cells
    assert profile.DEFAULT_MIN_CELL == small_cells.DEFAULT_MIN_CELL == 5


@pytest.mark.parametrize(("own", "job", "floor"), FLOORS)
def test_a_job_raises_the_sites_minimum_never_lowers_it(own, job, floor) -> None:
    settings = {} if own is None else {C.SITE_MIN_CELL_KEY: own}
    assert effective_min_cell(settings, job) == floor


@pytest.mark.parametrize("value", BAD_SETTINGS)
def test_a_bad_setting_names_the_file_and_key(value) -> None:
    with pytest.raises(SiteDataError) as err:
        site_min_cell({C.SITE_MIN_CELL_KEY: value})
    assert str(err.value) == SETTING_ERROR


def test_a_bad_job_minimum_is_named() -> None:
    with pytest.raises(SiteDataError, match="the job's min_cell must be a whole number >= 1"):
        effective_min_cell({}, 0)


@pytest.mark.parametrize(("labels", "pairs"), LABELS)
def test_class_counts(labels, pairs) -> None:
    assert class_counts(labels) == pairs


def _intervals(n_pos: int, n_neg: int) -> dict:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    return evaluate_with_intervals(labels, rng.random(n_pos + n_neg), n_bootstrap=20)


@pytest.mark.parametrize(
    ("n_pos", "n_neg", "withheld", "counts"),
    [
        (5, 5, None, (5, 5)),
        (4, 20, "fewer than 5 positive patients", (None, None)),
        (20, 4, "fewer than 5 negative patients", (None, None)),
        (0, 20, None, (0, 20)),  # one class: undefined, nothing to withhold
        (2, 2, "computed on fewer than 5 patients", (None, None)),
    ],
)
def test_the_class_wise_interval_metrics_of_a_small_class_are_withheld(
    n_pos, n_neg, withheld, counts
) -> None:
    raw = _intervals(n_pos, n_neg)
    out = release_intervals(raw, 5)
    assert (out["n_pos"], out["n_neg"]) == counts
    assert out["n"] == n_pos + n_neg
    for name in ("accuracy", "auc", "sensitivity", "specificity"):
        if withheld and (name != "accuracy" or n_pos + n_neg < 5):  # accuracy: only on too few patients
            assert out[name] == {
                "value": None,
                "lo": None,
                "hi": None,
                "reason": f"suppressed: {withheld}",
                C.M_SUPPRESSED: True,
            }
            assert f"{name}: {withheld}" in out[C.M_SUPPRESSED]
        else:
            assert out[name] == raw[name]
    if not withheld:
        assert C.M_SUPPRESSED not in out
    assert raw["n_pos"] == n_pos  # the input is not changed in place


def test_no_count_or_value_is_in_a_reason() -> None:
    out = release_intervals(_intervals(3, 17), 5)
    text = " ".join(out[C.M_SUPPRESSED]) + " ".join(str(out[m]["reason"]) for m in ("auc", "specificity"))
    assert "3" not in text and "17" not in text and "20" not in text


def test_validation_withholds_top_level_per_label_and_per_finding() -> None:
    findings = {"Effusion": _intervals(3, 27), "Edema": _intervals(10, 20)}
    metrics = {
        C.M_ACCURACY: 0.8,
        C.M_AUC: 0.7,
        C.M_LOSS: 0.4,
        C.M_PER_LABEL_AUC: {"Effusion": 0.9, "Edema": 0.6},
        C.M_PER_FINDING: findings,
        C.M_INTERVALS: _intervals(12, 18),
        C.M_N_TEST: 30,
    }
    out = release_validation(metrics, pairs=[(3, 27), (10, 20)], n=30, min_cell=5)
    assert out[C.M_ACCURACY] == 0.8  # on 30 patients
    assert out[C.M_AUC] is None  # class-wise over every label: one has 3 positives
    assert out[C.M_LOSS] == 0.4 and out[C.M_N_TEST] == 30
    assert out[C.M_PER_LABEL_AUC] == {"Effusion": None, "Edema": 0.6}
    assert out[C.M_PER_FINDING]["Effusion"]["auc"]["value"] is None
    assert out[C.M_PER_FINDING]["Edema"]["auc"] == findings["Edema"]["auc"]
    assert out[C.M_INTERVALS]["auc"] == metrics[C.M_INTERVALS]["auc"]
    assert out[C.M_SUPPRESSED] == [
        "auc: fewer than 5 positive patients",
        "per_label_auc.Effusion: fewer than 5 positive patients",
        "per_finding.Effusion.auc: fewer than 5 positive patients",
        "per_finding.Effusion.sensitivity: fewer than 5 positive patients",
        "per_finding.Effusion.specificity: fewer than 5 positive patients",
        "per_finding.Effusion.n_pos, n_neg: a class count below 5",
    ]


def test_a_validation_of_four_patients_releases_no_metric() -> None:
    metrics = {C.M_ACCURACY: 0.75, C.M_AUC: None, C.M_LOSS: 0.5, C.M_INTERVALS: _intervals(2, 2)}
    out = release_validation(metrics, pairs=[(2, 2)], n=4, min_cell=5)
    assert (out[C.M_ACCURACY], out[C.M_AUC], out[C.M_LOSS]) == (None, None, None)
    assert "loss: computed on fewer than 5 patients" in out[C.M_SUPPRESSED]
    assert "auc: computed on fewer than 5 patients" not in out[C.M_SUPPRESSED]  # undefined, not withheld


def _op(val_counts: tuple[int, int]) -> dict:
    half = {m: {"value": 0.5, "lo": 0.4, "hi": 0.6, "reason": None} for m in ("sensitivity", "specificity")}
    return {
        "method": "youden",
        "chosen_by": "fixed",
        "threshold": 0.5,
        "reason": f"the validation split holds {val_counts[0]} positive and {val_counts[1]} negative images",
        "calibration": {
            "kind": "platt",
            "params": {"a": 1.0, "b": 0.0},
            "val_nll_before": 0.6,
            "val_nll_after": 0.5,
            "reason": None,
        },
        "val": {"sensitivity": 0.7, "specificity": 0.8, "n_pos": val_counts[0], "n_neg": val_counts[1]},
        "test": dict(half),
        "test_at_0_5": dict(half),
        "floor": 0.5,
        "half_failed": "a sentence with values",
    }


def test_the_operating_point_withholds_what_rests_on_a_small_cell() -> None:
    out = release_operating_point(_op((3, 30)), {"n": 40, "n_pos": 4, "n_neg": 36}, 5)
    assert out["val"] == {"sensitivity": None, "specificity": None, "n_pos": None, "n_neg": None}
    assert out["reason"] == "suppressed: fewer than 5 positive patients in the validation split"
    assert (out["calibration"]["val_nll_before"], out["calibration"]["val_nll_after"]) == (None, None)
    assert out["calibration"]["params"] == {"a": 1.0, "b": 0.0} and out["threshold"] == 0.5
    assert out["test"]["sensitivity"]["value"] is None and out["test_at_0_5"]["specificity"][C.M_SUPPRESSED]
    assert out["half_failed"] is None
    kept = release_operating_point(_op((5, 30)), {"n": 40, "n_pos": 5, "n_neg": 35}, 5)
    assert kept == _op((5, 30))


def test_round_metrics_follow_their_names() -> None:
    metrics = {
        "global_accuracy": 0.8,
        "global_auc": 0.7,
        "global_loss": 0.5,
        "local_loss": 0.45,
        "personal_auc": 0.75,
        C.M_TRAIN_LOSS: 0.3,
        C.M_STEPS: 3,
        "lr": 0.01,
        C.M_N_TRAIN: 4,
        C.M_EVAL_SPLIT: "test",
    }
    out = release_round(metrics, pairs=[(2, 28)], n_split=30, n_train=4, min_cell=5)
    assert out["global_accuracy"] == 0.8  # on 30 patients
    assert [k for k, v in out.items() if v is None] == [
        "global_auc",
        "personal_auc",
        "train_loss",
    ]
    assert out["global_loss"] == 0.5 and out["local_loss"] == 0.45 and out["lr"] == 0.01 and out["steps"] == 3
    assert out[C.M_SUPPRESSED][-1] == "train_loss: computed on fewer than 5 patients"
    assert release_round(metrics, pairs=[(5, 25)], n_split=30, n_train=5, min_cell=5) == metrics
