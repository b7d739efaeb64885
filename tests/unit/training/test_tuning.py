"""Federated cross-validation: folds, held-out scoring and selection (no test split involved)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fedhealth.data.site_data import RAW_COLUMNS, SiteTable
from fedhealth.models.tabular import TabularNet
from fedhealth_tools.training.tuning import (
    CVScore,
    cv_curve,
    grid,
    make_folds,
    stratified_fold_ids,
    tune,
    tune_per_site,
)

# (labels, n_folds): mixed classes, a class smaller than the number of folds, a single class.
FOLD_CASES = [
    (np.array([0] * 10 + [1] * 7), 3),
    (np.array([0] * 2 + [1] * 20), 3),
    (np.array([1] * 30), 3),
    (np.array([0, 1] * 6), 4),
]
SIZES = {"a": (12, 5), "b": (9, 8)}  # site -> (positives, negatives) in its training table


def _table(n_pos: int, n_neg: int, start: int) -> SiteTable:
    """Rows whose ``age`` is a unique row id, with valid UCI codes elsewhere."""
    n = n_pos + n_neg
    rng = np.random.default_rng(start)
    features = pd.DataFrame({c: rng.integers(0, 2, n).astype("float64") for c in RAW_COLUMNS})
    features["age"] = np.arange(start, start + n, dtype="float64")
    features["cp"] = rng.integers(1, 5, n).astype("float64")
    features["chol"] = rng.normal(240, 40, n)
    labels = np.array([1.0] * n_pos + [0.0] * n_neg, dtype="float32")
    return SiteTable(features=features, labels=labels)


def _tables() -> dict[str, SiteTable]:
    return {name: _table(p, q, 100 * (i + 1)) for i, (name, (p, q)) in enumerate(SIZES.items())}


def _constant_model(logit: float) -> TabularNet:
    model = TabularNet(in_features=13, arch="logreg", seed=0)
    with torch.no_grad():
        model.net.weight.zero_()
        model.net.bias.fill_(logit)
    return model


@pytest.mark.parametrize(("labels", "n_folds"), FOLD_CASES)
def test_folds_are_a_stratified_partition(labels: np.ndarray, n_folds: int) -> None:
    ids = stratified_fold_ids(labels, n_folds=n_folds, seed=3)
    assert sorted(set(ids.tolist())) == list(range(n_folds))
    sizes = np.bincount(ids, minlength=n_folds)
    assert sizes.sum() == len(labels) and sizes.max() - sizes.min() <= 1
    for value in np.unique(labels):
        per_fold = np.bincount(ids[labels == value], minlength=n_folds)
        assert per_fold.max() - per_fold.min() <= 1
    np.testing.assert_array_equal(ids, stratified_fold_ids(labels, n_folds=n_folds, seed=3))


@pytest.mark.parametrize(("n_folds", "message"), [(1, "at least two folds"), (5, "Cannot deal 4 rows")])
def test_fold_arguments_are_checked(n_folds: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stratified_fold_ids(np.array([0, 1, 0, 1]), n_folds=n_folds)


def test_each_row_is_held_out_once_and_never_trained_on_then() -> None:
    tables = _tables()
    folds = make_folds(tables, n_folds=3, seed=0, chol_zero_as_missing=False)
    for i, name in enumerate(SIZES):
        held = [set(fold[i].test.features["age"]) for fold in folds]
        assert set().union(*held) == set(tables[name].features["age"]) and sum(map(len, held)) == len(
            tables[name]
        )
        for fold, rows in zip(folds, held, strict=True):
            assert rows.isdisjoint(fold[i].train.features["age"])
            assert len(rows) + fold[i].n_train == len(tables[name])


def test_global_scaling_comes_from_training_folds_only() -> None:
    sites = make_folds(_tables(), n_folds=3, seed=1, chol_zero_as_missing=False)[0]
    train_ages = np.concatenate([s.train.features["age"].to_numpy() for s in sites])
    all_ages = np.concatenate([t.features["age"].to_numpy() for t in _tables().values()])
    assert sites[0].scaler.mean[0] == pytest.approx(train_ages.mean())
    assert sites[0].scaler.mean[0] != pytest.approx(all_ages.mean())


def test_cv_score_is_the_client_average_on_held_out_folds() -> None:
    folds = make_folds(_tables(), n_folds=3, seed=2, chol_zero_as_missing=False)
    seen: list[int] = []

    def trainer(sites, report):
        seen.append(sum(s.n_train for s in sites))
        for step in (1, 2):
            report(step, _constant_model(5.0))  # predicts "disease" for everyone

    curve = cv_curve(trainer, folds)
    expected = np.mean([np.mean([s.test.labels.mean() for s in sites]) for sites in folds])
    assert sorted(curve) == [1, 2]
    assert curve[1][0] == pytest.approx(expected) and curve[2] == curve[1]
    assert curve[1][0] != pytest.approx(np.mean([p / (p + q) for p, q in SIZES.values()]), abs=1e-6)
    assert seen == [sum(s.n_train for s in sites) for sites in folds] and max(seen) < 34


def test_tune_picks_the_best_candidate_and_checkpoint() -> None:
    folds = make_folds(_tables(), n_folds=3, seed=0, chol_zero_as_missing=False)

    def make_trainer(params):
        def trainer(sites, report):
            for step in (1, 2, 3):
                report(step, _constant_model(params["logit"] * step))

        return trainer

    best, scores = tune(grid(logit=[-1.0, 1.0]), make_trainer, folds)
    assert len(scores) == 6
    # Logits 1, 2, 3 all predict "disease" (the majority); logit 1 is nearest the base rate: lowest loss.
    assert best.params == {"logit": 1.0} and best.step == 1
    assert best.accuracy == pytest.approx(max(s.accuracy for s in scores))


def test_lower_loss_wins_then_accuracy_then_earlier_step() -> None:
    a, b, c = CVScore({}, 5, 0.8, 0.40), CVScore({}, 2, 0.9, 0.45), CVScore({}, 3, 0.8, 0.40)
    assert min([a, b, c], key=CVScore.sort_key) is c  # b's higher accuracy does not beat a lower loss
    d = CVScore({}, 9, 0.85, 0.40)
    assert min([a, c, d], key=CVScore.sort_key) is d
    assert grid(x=[1, 2], y=["p"]) == [{"x": 1, "y": "p"}, {"x": 2, "y": "p"}]


def test_each_site_picks_its_own_best_candidate() -> None:
    folds = make_folds(_tables(), n_folds=3, seed=0, chol_zero_as_missing=False)
    # Site "a" is 12/17 positive, "b" 9/17: the loss-optimal constant logit differs per site.
    best = tune_per_site(grid(logit=[-2.0, 0.0, 0.5, 1.0, 2.0]), _constant_trainer, folds)
    assert set(best) == {"a", "b"}
    assert best["a"].params == {"logit": 1.0} and best["b"].params == {"logit": 0.0}
    assert best["a"].step == best["b"].step == 1


def _constant_trainer(params):
    def trainer(sites, report):
        report(1, _constant_model(params["logit"]))

    return trainer
