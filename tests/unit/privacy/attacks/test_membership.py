"""Membership inference: the loss threshold (Yeom et al. 2018) and LiRA (Carlini et al. 2022) on tiny
logistic-regression problems where the answer is known: a model that memorised its members is found
out, a model that saw neither group is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from fedhealth.models.tabular import TabularNet
from fedhealth_tools.privacy.attacks.membership import (
    lira_auc,
    loss_threshold_auc,
    per_example_losses,
    rank_auc,
    tpr_at_fpr,
)

D = 40  # features: more than the members, so random labels are separable and the model memorises them
N = 30  # rows per group


def _data(seed: int, n: int = N, d: int = D) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 2, n).astype(np.float32)


def _train(x: np.ndarray, y: np.ndarray, *, steps: int = 100, seed: int = 0) -> nn.Module:
    """Full-batch gradient descent to near zero training loss on random labels: a deliberately overfit
    model (with more features than rows, the labels are separable)."""
    model = TabularNet(in_features=x.shape[1], seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(xt), yt).backward()
        opt.step()
    return model


def test_per_example_losses_are_bce_in_eval_mode_and_restore_the_mode() -> None:
    x, y = _data(0, n=5)
    model = TabularNet(in_features=D, arch="mlp", dropout=0.9, seed=0)
    model.train()
    losses = per_example_losses(model, x, y)
    assert losses.shape == (5,) and model.training  # dropout was off (eval), and the mode is back
    with torch.no_grad():
        model.eval()
        expected = nn.functional.binary_cross_entropy_with_logits(
            model(torch.from_numpy(x)), torch.from_numpy(y), reduction="none"
        )
    np.testing.assert_allclose(losses, expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    ("x_shape", "y", "message"),
    [
        ((4, D), [0, 1, 2, 0], "0 or 1"),
        ((4, D), [0, 1, 0], "one label each"),
        ((4,), [0, 1, 1, 0], "(n >= 1, ...) rows or images"),
    ],
)
def test_bad_rows_are_refused(x_shape, y, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        per_example_losses(TabularNet(in_features=D), np.zeros(x_shape, np.float32), np.array(y))


def test_a_multi_logit_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"one logit per row \(shape \(3,\)\), got \(3, 2\)"):
        per_example_losses(nn.Linear(D, 2), np.zeros((3, D), np.float32), np.array([0, 1, 0]))


def test_rank_auc_matches_sklearn_with_ties_and_at_both_ends() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 50).astype(float), rng.integers(0, 4, 70).astype(float)  # many ties
    expected = roc_auc_score(np.r_[np.ones(50), np.zeros(70)], np.r_[pos, neg])
    assert rank_auc(pos, neg) == pytest.approx(expected, abs=1e-12)
    assert rank_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert rank_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0
    assert rank_auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5


def test_loss_threshold_auc_ends_and_checks() -> None:
    assert loss_threshold_auc(np.array([0.1, 0.2]), np.array([0.5, 0.9])) == 1.0  # lower loss: member
    assert loss_threshold_auc(np.array([0.5, 0.9]), np.array([0.1, 0.2])) == 0.0
    with pytest.raises(ValueError, match="need members and non-members, got 0 and 2"):
        loss_threshold_auc(np.array([]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        loss_threshold_auc(np.array([np.nan]), np.array([0.1]))


def test_tpr_at_fpr_allows_floor_of_the_share_of_false_positives() -> None:
    neg = np.arange(200, dtype=float)  # 1% of 200: two negatives may lie above the threshold (197)
    assert tpr_at_fpr(np.array([197.5, 198.5, 196.0, 300.0]), neg) == 0.75
    assert tpr_at_fpr(np.array([1.0]), np.arange(50, dtype=float)) == 0.0  # no false positive allowed


def test_loss_threshold_finds_an_overfit_models_members_and_not_an_unseen_groups() -> None:
    # With 400 features for 30 rows, every member's margin dwarfs what a fresh row gets.
    (xm, ym), (xn, yn), (xo, yo) = _data(1, d=400), _data(2, d=400), _data(3)
    overfit = _train(xm, ym)
    member_losses = per_example_losses(overfit, xm, ym)
    assert member_losses.max() < 0.01  # memorised
    auc = loss_threshold_auc(member_losses, per_example_losses(overfit, xn, yn))
    assert auc > 0.99, auc
    # A model trained on a third sample saw neither group: the groups are exchangeable to it.
    (xm, ym), (xn, yn) = _data(4, n=300), _data(5, n=300)
    unseen = _train(xo, yo)
    auc = loss_threshold_auc(per_example_losses(unseen, xm, ym), per_example_losses(unseen, xn, yn))
    assert abs(auc - 0.5) < 0.06, auc


def _pool(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = _data(seed, n=2 * N)
    is_member = np.zeros(2 * N, bool)
    is_member[np.random.default_rng(seed).permutation(2 * N)[:N]] = True
    return x, y, is_member


def _shadow_trainer(x: np.ndarray, y: np.ndarray):
    calls = []

    def train_shadow(mask: np.ndarray) -> nn.Module:
        assert mask.dtype == bool and mask.shape == (len(y),)
        calls.append(mask)
        return _train(x[mask], y[mask], seed=len(calls))

    return train_shadow, calls


def test_lira_finds_an_overfit_targets_members() -> None:
    x, y, is_member = _pool(6)
    target = _train(x[is_member], y[is_member], seed=0)
    train_shadow, calls = _shadow_trainer(x, y)
    result = lira_auc(target, x, y, is_member, train_shadow, 8, 0)
    assert len(calls) == 8
    assert np.all(np.sum(calls, axis=0) == 4)  # each row IN for exactly half the shadows
    assert result["auc"] > 0.85, result  # 0.92 at these seeds
    assert result["offline_auc"] > 0.7, result  # 0.77: OUT fits alone are weaker
    assert result["global_variance"] and result["n_members"] == N and result["n_nonmembers"] == N


def test_lira_is_chance_when_members_and_nonmembers_are_exchangeable() -> None:
    x, y, is_member = _pool(7)
    xo, yo = _data(8)
    target = _train(xo, yo, seed=0)  # trained on neither group
    train_shadow, _ = _shadow_trainer(x, y)
    result = lira_auc(target, x, y, is_member, train_shadow, 8, 0)
    assert abs(result["auc"] - 0.5) < 0.15, result
    assert abs(result["offline_auc"] - 0.5) < 0.15, result


@pytest.mark.parametrize(
    ("is_member", "n_shadows", "in_fraction", "message"),
    [
        (np.ones(2 * N, bool), 4, 0.5, "both members and non-members"),
        (np.r_[np.ones(N), np.zeros(N)], 4, 0.5, "booleans"),
        (np.r_[np.ones(N, bool), np.zeros(N, bool)], 1, 0.5, "1 shadows with in_fraction 0.5 give 0 IN"),
        (np.r_[np.ones(N, bool), np.zeros(N, bool)], 4, 0.9, "4 shadows with in_fraction 0.9 give 4 IN"),
    ],
)
def test_lira_refuses_bad_arguments(is_member, n_shadows: int, in_fraction: float, message: str) -> None:
    x, y, _ = _pool(0)
    untrained = TabularNet(in_features=D)
    with pytest.raises(ValueError, match=message):
        lira_auc(untrained, x, y, is_member, lambda m: untrained, n_shadows, 0, in_fraction=in_fraction)


def test_lira_in_fraction_sets_how_many_shadows_train_on_each_row() -> None:
    x, y, is_member = _pool(6)
    train_shadow, calls = _shadow_trainer(x, y)
    lira_auc(_train(x[is_member], y[is_member]), x, y, is_member, train_shadow, 4, 0, in_fraction=0.75)
    assert np.all(np.sum(calls, axis=0) == 3)
