"""Hyper-parameter selection by federated cross-validation inside the sites' training data.

Each site deals its own training rows into ``k`` stratified folds. For fold ``j`` every site trains
on its other folds and holds fold ``j`` out; the global scaling is recomputed from the training
folds only, so held-out rows never reach the statistics. A candidate is trained on the training
folds and scored by the client-average accuracy on the held-out folds (the mean over sites, the
benchmark's headline metric), with the mean held-out loss as tie-break. The test split is never
read: a fold site carries its held-out fold where a site carries its test split.

This is k-fold cross-validation (Stone 1974, "Cross-validatory choice and assessment of
statistical predictions") run per site, so that no row leaves its site. A trainer reports its
model at checkpoints (rounds or epochs), so one run per fold scores every stopping point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from fedhealth.data.site_data import SiteTable
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import predict
from fedhealth.training.metrics import accuracy
from fedhealth_tools.training.federation import federated_scaling
from fedhealth_tools.training.trainers import Model, Trainer


def stratified_fold_ids(labels: np.ndarray, *, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold number of every row: each class is shuffled and dealt round-robin over the folds.

    Class counts per fold differ by at most one, also for a class with fewer rows than folds; a
    site whose training split holds a single class is dealt as that one class.

    Raises:
        ValueError: when there are fewer than two folds or fewer rows than folds.
    """
    labels = np.asarray(labels)
    if n_folds < 2:
        raise ValueError(f"Cross-validation needs at least two folds, got n_folds={n_folds}.")
    if len(labels) < n_folds:
        raise ValueError(f"Cannot deal {len(labels)} rows into {n_folds} folds; use fewer folds.")
    rng = np.random.default_rng(seed)
    fold_ids = np.empty(len(labels), dtype=int)
    offset = 0
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        fold_ids[rows] = (offset + np.arange(len(rows))) % n_folds
        offset += len(rows)  # the next class starts where this one stopped: fold sizes stay balanced
    return fold_ids


def split_table(table: SiteTable, fold_ids: np.ndarray, fold: int) -> tuple[SiteTable, SiteTable]:
    """The training folds and the held-out fold ``fold`` of one site's training table."""
    held = np.asarray(fold_ids) == fold
    features = table.features.reset_index(drop=True)
    return (
        SiteTable(features=features[~held].reset_index(drop=True), labels=table.labels[~held]),
        SiteTable(features=features[held].reset_index(drop=True), labels=table.labels[held]),
    )


def make_folds(
    train_tables: Mapping[str, SiteTable], *, n_folds: int, seed: int, chol_zero_as_missing: bool
) -> list[list[HeartSite]]:
    """Federated folds: in fold ``j`` each site trains on its other folds and holds out fold ``j``.

    Site ``i`` deals its rows with seed ``seed * 1000 + i``; each fold's global scaling comes from
    :func:`federated_scaling` over the training folds only.
    """
    ids = {
        name: stratified_fold_ids(table.labels, n_folds=n_folds, seed=seed * 1000 + i)
        for i, (name, table) in enumerate(train_tables.items())
    }
    folds = []
    for fold in range(n_folds):
        sites = [
            HeartSite(name, *split_table(table, ids[name], fold), chol_zero_as_missing=chol_zero_as_missing)
            for name, table in train_tables.items()
        ]
        federated_scaling(sites)
        folds.append(sites)
    return folds


def model_for(model: Model, site: HeartSite) -> nn.Module:
    """The model ``site`` uses: the shared one, or its own after fine-tuning."""
    return model[site.name] if isinstance(model, Mapping) else model


def site_scores(sites: Sequence[HeartSite], model: Model) -> dict[str, tuple[float, float]]:
    """Each site's accuracy and loss of ``model`` on its held-out (``test``) split."""
    out = {}
    for site in sites:
        x, y = site.arrays("test")
        probs = np.clip(predict(model_for(model, site), x), 1e-7, 1 - 1e-7)
        out[site.name] = (
            accuracy(y, probs),
            float(-(y * np.log(probs) + (1 - y) * np.log(1 - probs)).mean()),
        )
    return out


def held_out_score(sites: Sequence[HeartSite], model: Model) -> tuple[float, float]:
    """Client-average accuracy and loss of ``model`` on the sites' held-out (``test``) splits.

    Accuracy and loss only (no ROC AUC, which costs more than the training step it scores).
    """
    scores = list(site_scores(sites, model).values())
    return float(np.mean([a for a, _ in scores])), float(np.mean([loss for _, loss in scores]))


def cv_site_curves(
    trainer: Trainer, folds: Sequence[Sequence[HeartSite]]
) -> dict[int, dict[str, tuple[float, float]]]:
    """Each site's held-out (accuracy, loss) at each checkpoint, averaged over folds.

    Raises:
        ValueError: when the trainer reports different checkpoints in different folds.
    """
    per_fold: list[dict[int, dict[str, tuple[float, float]]]] = []
    for sites in folds:
        scores: dict[int, dict[str, tuple[float, float]]] = {}

        def report(
            step: int, model: Model, sites: Sequence[HeartSite] = sites, scores: dict = scores
        ) -> None:
            scores[step] = site_scores(sites, model)

        trainer(sites, report)
        per_fold.append(scores)
    steps = sorted(per_fold[0])
    if not steps or any(sorted(scores) != steps for scores in per_fold):
        raise ValueError("The trainer must report the same, non-empty checkpoints in every fold.")
    names = list(per_fold[0][steps[0]])
    return {
        step: {n: tuple(np.mean([f[step][n] for f in per_fold], axis=0).tolist()) for n in names}
        for step in steps
    }


def cv_curve(trainer: Trainer, folds: Sequence[Sequence[HeartSite]]) -> dict[int, tuple[float, float]]:
    """Held-out client-average (accuracy, loss) at each checkpoint, averaged over folds."""
    curves = cv_site_curves(trainer, folds)
    return {step: tuple(np.mean(list(sites.values()), axis=0).tolist()) for step, sites in curves.items()}


@dataclass(frozen=True)
class CVScore:
    """The cross-validated score of one candidate stopped at checkpoint ``step``."""

    params: dict = field(hash=False)
    step: int
    accuracy: float
    loss: float

    def sort_key(self) -> tuple[float, float, int]:
        """Lower held-out log-loss first, then higher accuracy, then the earlier checkpoint.

        Log-loss is a proper scoring rule; accuracy at 0.5 on folds of 10 to 70 patients moves in
        steps of 1.5 to 10 points and ranks settings by noise (and on Switzerland's all-positive
        folds it rewards any model that calls everyone positive).
        """
        return (round(self.loss, 9), -round(self.accuracy, 9), self.step)


def tune(
    candidates: Sequence[dict], make_trainer: Callable[[dict], Trainer], folds: Sequence[Sequence[HeartSite]]
) -> tuple[CVScore, list[CVScore]]:
    """Score every candidate at every checkpoint by cross-validation; the best and all scores.

    Raises:
        ValueError: when there is no candidate.
    """
    if not candidates:
        raise ValueError("tune needs at least one candidate.")
    scores = []
    for params in candidates:
        curve = cv_curve(make_trainer(params), folds)
        scores += [CVScore(dict(params), step, acc, loss) for step, (acc, loss) in curve.items()]
    return min(scores, key=CVScore.sort_key), scores


def tune_per_site(
    candidates: Sequence[dict], make_trainer: Callable[[dict], Trainer], folds: Sequence[Sequence[HeartSite]]
) -> dict[str, CVScore]:
    """The best candidate and checkpoint for each site, judged on that site's held-out folds only.

    For personalization: every hospital decides for itself, on its own data, how (and whether)
    to adapt the shared model; a checkpoint 0 reported by the trainer is "keep the shared model".
    """
    if not candidates:
        raise ValueError("tune_per_site needs at least one candidate.")
    best: dict[str, CVScore] = {}
    for params in candidates:
        for step, sites in cv_site_curves(make_trainer(params), folds).items():
            for name, (acc, loss) in sites.items():
                score = CVScore(dict(params), step, acc, loss)
                if name not in best or score.sort_key() < best[name].sort_key():
                    best[name] = score
    return best


def grid(**values: Sequence[object]) -> list[dict]:
    """Every combination of the given values, e.g. ``grid(lr=[0.01, 0.1], mu=[0.0])``."""
    combos: list[dict] = [{}]
    for name, options in values.items():
        combos = [{**combo, name: option} for combo in combos for option in options]
    return combos
