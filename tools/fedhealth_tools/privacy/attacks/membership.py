"""Membership inference on a final model: can an attacker tell a site's training rows from others?

Two attacks, both scored by the ROC AUC of "member" against "non-member" over all thresholds:

- the loss threshold (Yeom et al. 2018, "Privacy Risk in Machine Learning: Analyzing the Connection to
  Overfitting"): a row the model trained on tends to have a lower loss; the score is ``−loss``.
- LiRA, the likelihood-ratio attack (Carlini et al. 2022, "Membership Inference Attacks From First
  Principles"): shadow models, trained the same way as the target on random halves of the candidate
  rows, give each row the distribution of its logit-scaled confidence ``φ = log(p / (1 − p))`` (``p``
  the probability of the row's true label; for one logit ``z`` this is ``φ = (2y − 1) z``) when the row
  was IN the training set and when it was OUT. Each is fitted by a Gaussian; the row's score is the
  likelihood ratio of the target's ``φ`` under IN against OUT.

We run LiRA **online** (IN and OUT fits) and report the **offline** variant (OUT fit only, one-sided
z-score) from the same shadows. Online is the stronger attack at a given number of shadows (Carlini et
al. compare the two) and costs nothing more here: every shadow trains on a random subset of the
candidate rows (each row IN for exactly half the shadows by default), so both fits come from the same
models. Offline is what an attacker who cannot train on the target's candidates would run. With fewer
than 64 shadows the variances are pooled over rows ("global variance", as Carlini et al. advise when
shadows are few).

The binary tasks of the kit only: one logit per row, ``BCEWithLogitsLoss``. TPR at 1% FPR is reported
with the AUC (Carlini et al. argue low-FPR TPR is what matters); with ``m`` non-members it rests on
``floor(m / 100)`` false positives, so treat it as coarse for a few hundred rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

# Below this many shadows the per-row variances are too noisy: pool them (Carlini et al. 2022).
GLOBAL_VARIANCE_BELOW = 64
FPR_LEVEL = 0.01


def _check_rows(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float64).ravel()
    if x.ndim < 2 or len(x) != len(y) or len(y) == 0:
        raise ValueError(
            f"x must be (n >= 1, ...) rows or images with one label each, got x {x.shape} and y {y.shape}."
        )
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1 (the kit's binary tasks).")
    return torch.from_numpy(x), y


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """One logit per row, in eval mode; the model's training mode is restored."""
    was_training = model.training
    model.eval()
    try:
        out = model(x)
    finally:
        model.train(was_training)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.shape != (len(x),):
        raise ValueError(
            f"the model must give one logit per row (shape ({len(x)},)), got {tuple(out.shape)}."
        )
    return out.double().numpy()


def per_example_losses(model: nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's ``BCEWithLogitsLoss`` under ``model`` (eval mode, no gradient), shape ``(n,)``."""
    xt, y = _check_rows(x, y)
    z = torch.from_numpy(_logits(model, xt))
    return nn.functional.binary_cross_entropy_with_logits(z, torch.from_numpy(y), reduction="none").numpy()


def rank_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """``P(score of a positive > score of a negative)``, ties counting one half (Mann–Whitney U)."""
    scores = np.concatenate([positive, negative])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average rank within ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    positive, negative = np.asarray(positive, np.float64).ravel(), np.asarray(negative, np.float64).ravel()
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError(f"need members and non-members, got {len(positive)} and {len(negative)}.")
    if not (np.all(np.isfinite(positive)) and np.all(np.isfinite(negative))):
        raise ValueError("membership scores hold NaN or infinite values.")
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:  # the tools' venv has sklearn; the formula is the same statistic
        return rank_auc(positive, negative)
    labels = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    return float(roc_auc_score(labels, np.concatenate([positive, negative])))


def tpr_at_fpr(positive: np.ndarray, negative: np.ndarray, fpr: float = FPR_LEVEL) -> float:
    """Share of positives scored strictly above a threshold that at most ``fpr`` of negatives exceed."""
    negative = np.sort(np.asarray(negative, np.float64))[::-1]
    allowed = int(np.floor(fpr * len(negative)))  # false positives allowed
    threshold = negative[allowed] if allowed < len(negative) else -np.inf
    return float(np.mean(np.asarray(positive, np.float64) > threshold))


def loss_threshold_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float:
    """ROC AUC of the loss-threshold attack (Yeom et al. 2018): a lower loss says "member".

    0.5 is chance, 1.0 separates every member from every non-member.
    """
    return _auc(-np.asarray(member_losses, np.float64), -np.asarray(nonmember_losses, np.float64))


def _confidence(model: nn.Module, x: torch.Tensor, y: np.ndarray) -> np.ndarray:
    """Logit-scaled confidence of the true label, ``φ = (2y − 1) z`` (Carlini et al. 2022)."""
    return (2.0 * y - 1.0) * _logits(model, x)


def _log_normal(value: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((value - mean) / sd) ** 2 - np.log(sd)


def lira_auc(
    target_model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    is_member: np.ndarray,
    train_shadow: Callable[[np.ndarray], nn.Module],
    n_shadows: int,
    seed: int,
    *,
    in_fraction: float = 0.5,
) -> dict:
    """LiRA (Carlini et al. 2022), online with the offline variant alongside, on the candidate rows.

    Args:
        target_model: the model attacked (e.g. the final FedAvg global model).
        x: the candidate rows ``(n, d)``, members and non-members, as the model sees them (scaled).
        y: their labels, 0/1.
        is_member: ``(n,)`` bool, whether the target trained on each row (used only to score).
        train_shadow: trains a fresh model on the rows of ``x`` that a boolean mask ``(n,)`` selects,
            **the same way the target was trained** (same algorithm, rounds, learning rate, DP), and
            returns it. Called ``n_shadows`` times.
        n_shadows: shadow models; at least 2 (each row is IN for ``round(in_fraction * n_shadows)``
            of them, and OUT for the others).
        seed: picks the shadows' subsets.
        in_fraction: share of the candidate rows each shadow trains on, on average: Carlini et al.'s
            0.5 by default; the target's own share (members / candidates) mimics its training size.

    Returns:
        ``auc`` and ``tpr_at_1pct_fpr`` (online), ``offline_auc`` and ``offline_tpr_at_1pct_fpr``,
        ``n_shadows``, ``global_variance``, ``n_members``, ``n_nonmembers``, ``variant``.
    """
    xt, y = _check_rows(x, y)
    is_member = np.asarray(is_member).ravel()
    if is_member.dtype != bool or len(is_member) != len(y):
        raise ValueError(f"is_member must be {len(y)} booleans, got {is_member.dtype} of {len(is_member)}.")
    if is_member.all() or not is_member.any():
        raise ValueError("is_member must mark both members and non-members.")
    n_in = round(in_fraction * n_shadows)
    if n_shadows < 2 or not 1 <= n_in <= n_shadows - 1:
        raise ValueError(
            f"LiRA needs every row IN at least one shadow and OUT of another: {n_shadows} shadows with "
            f"in_fraction {in_fraction} give {n_in} IN; use at least 2 shadows and 0 < in_fraction < 1."
        )
    rng = np.random.default_rng(seed)
    # Each column (row of x) is IN for exactly n_in shadows (Carlini et al.'s balanced subsets).
    keep = rng.random((n_shadows, len(y))).argsort(axis=0) < n_in
    phi = np.stack([_confidence(train_shadow(keep[k].copy()), xt, y) for k in range(n_shadows)])
    target = _confidence(target_model, xt, y)
    in_obs, out_obs = np.where(keep, phi, np.nan), np.where(~keep, phi, np.nan)
    mean_in, mean_out = np.nanmean(in_obs, axis=0), np.nanmean(out_obs, axis=0)
    global_variance = n_shadows < GLOBAL_VARIANCE_BELOW
    if global_variance:
        sd_in = np.full(len(y), np.nanstd(in_obs - mean_in))
        sd_out = np.full(len(y), np.nanstd(out_obs - mean_out))
    else:
        sd_in, sd_out = np.nanstd(in_obs, axis=0), np.nanstd(out_obs, axis=0)
    sd_in, sd_out = np.maximum(sd_in, 1e-6), np.maximum(sd_out, 1e-6)  # a shadow set that agrees exactly
    online = _log_normal(target, mean_in, sd_in) - _log_normal(target, mean_out, sd_out)
    offline = (target - mean_out) / sd_out  # one-sided: confidence above what OUT models give
    return {
        "variant": "online (offline alongside)",
        "auc": _auc(online[is_member], online[~is_member]),
        "tpr_at_1pct_fpr": tpr_at_fpr(online[is_member], online[~is_member]),
        "offline_auc": _auc(offline[is_member], offline[~is_member]),
        "offline_tpr_at_1pct_fpr": tpr_at_fpr(offline[is_member], offline[~is_member]),
        "n_shadows": n_shadows,
        "global_variance": global_variance,
        "n_members": int(is_member.sum()),
        "n_nonmembers": int((~is_member).sum()),
    }
