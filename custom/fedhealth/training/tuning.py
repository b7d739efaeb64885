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

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedhealth.data.site_data import SiteTable
from fedhealth.models.tabular import TabularNet
from fedhealth.training.federation import federated_scaling, run_federation
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import LocalTrainConfig, predict, train_local
from fedhealth.training.metrics import accuracy

# One model for every site, or one per site name (after local fine-tuning).
Model = nn.Module | Mapping[str, nn.Module]
Report = Callable[[int, Model], None]
# A trainer trains on the sites' train splits, reports checkpoints and returns the final model.
Trainer = Callable[[Sequence[HeartSite], Report], Model]


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


def build_model(params: Mapping[str, object], n_features: int) -> TabularNet:
    """``TabularNet`` from ``arch``, ``hidden`` (MLP) and ``seed`` (initial weights)."""
    return TabularNet(
        in_features=n_features,
        arch=str(params["arch"]),
        hidden=int(params.get("hidden", 16)),
        seed=params["seed"],
    )


def _local_config(params: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    keys = ("batch_size", "local_steps", "local_epochs", "mu", "optimizer", "weight_decay")
    return {k: params[prefix + k] for k in keys if prefix + k in params}


def centralized_trainer(params: Mapping[str, object]) -> Trainer:
    """Train one model on the union of the given sites' train splits for ``epochs`` epochs.

    Pooled training when given all sites, local training when given one. With SGD (stateless)
    it reports after every epoch; with Adam it trains in one call and reports only at the end.
    """

    def train(sites: Sequence[HeartSite], report: Report) -> nn.Module:
        x = np.concatenate([site.arrays("train")[0] for site in sites])
        y = np.concatenate([site.arrays("train")[1] for site in sites])
        model = build_model(params, x.shape[1])
        gen = torch.Generator().manual_seed(int(params["seed"]))
        epochs = int(params["epochs"])
        chunk = 1 if params.get("optimizer", "sgd") == "sgd" else epochs
        local = {**_local_config(params), "local_epochs": chunk, "local_steps": 0}
        for done in range(chunk, epochs + 1, chunk):
            train_local(model, x, y, LocalTrainConfig(lr=float(params["lr"]), **local), generator=gen)
            report(done, model)
        return model

    return train


def federated_trainer(params: Mapping[str, object]) -> Trainer:
    """FedAvg / FedProx (``mu``) for ``rounds`` rounds at ``lr * gamma ** round``; reports every round."""

    def train(sites: Sequence[HeartSite], report: Report) -> nn.Module:
        result = run_federation(
            sites,
            lambda: build_model(params, sites[0].n_features),
            rounds=int(params["rounds"]),
            lr=float(params["lr"]),
            gamma=float(params.get("gamma", 1.0)),
            seed=int(params["seed"]),
            on_round=lambda r, model: report(r + 1, model),
            **_local_config(params),
        )
        return result.model

    return train


FT_SCOPES = ("all", "bias")


def restrict_to_output_bias(model: nn.Module) -> nn.Module:
    """Freeze every parameter but the output layer's bias (the model's intercept), in place.

    Fine-tuning only the intercept lets a hospital re-calibrate the shared model to its own
    prevalence of disease (one number per site) without refitting the shared feature weights.
    """
    biases = [name for name, _ in model.named_parameters() if name.endswith("bias")]
    if not biases:
        raise ValueError("The model has no bias to fine-tune.")
    for name, param in model.named_parameters():
        param.requires_grad_(name == biases[-1])
    return model


def finetuned_trainer(params: Mapping[str, object]) -> Trainer:
    """A federated model, then each site fine-tunes its own copy (SGD): local personalization.

    ``ft_lr``, ``ft_epochs``, ``ft_scope`` (``"all"`` weights or only the output ``"bias"``) and the
    ``ft_*`` local settings apply to the fine-tuning, the other parameters to the federation.
    ``ft_by_site`` (``{site: {ft_lr, ft_epochs, ft_scope}}``) overrides them per site, as each
    hospital's own cross-validation chose; ``ft_epochs`` 0 keeps the shared model. Reports the
    shared model as checkpoint 0, then the per-site models after every fine-tuning epoch.
    """
    by_site = dict(params.get("ft_by_site", {}))

    def site_setting(name: str) -> dict:
        setting = {k: params[k] for k in ("ft_lr", "ft_epochs", "ft_scope") if k in params}
        setting.update(by_site.get(name, {}))
        if setting.get("ft_scope", "all") not in FT_SCOPES:
            raise ValueError(f"ft_scope must be one of {FT_SCOPES}, not {setting['ft_scope']!r}.")
        return setting

    federate = federated_trainer(params)

    def train(sites: Sequence[HeartSite], report: Report) -> dict[str, nn.Module]:
        shared = federate(sites, lambda step, model: None)
        report(0, shared)
        settings = {site.name: site_setting(site.name) for site in sites}
        models = {site.name: copy.deepcopy(shared) for site in sites}
        for name, setting in settings.items():
            if setting.get("ft_scope", "all") == "bias":
                restrict_to_output_bias(models[name])
        gens = {
            s.name: torch.Generator().manual_seed(int(params["seed"]) * 1000 + i) for i, s in enumerate(sites)
        }
        for epoch in range(1, max(int(st.get("ft_epochs", 0)) for st in settings.values()) + 1):
            for site in sites:
                setting = settings[site.name]
                if epoch <= int(setting.get("ft_epochs", 0)):
                    config = LocalTrainConfig(lr=float(setting["ft_lr"]), **_local_config(params, "ft_"))
                    site.train_round(models[site.name], config, generator=gens[site.name])
            report(epoch, models)
        return models

    return train
