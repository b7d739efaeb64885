"""Trainers for benchmarks and cross-validation: pooled/local, federated, federated + fine-tuning.

A trainer takes the sites, trains on their ``train`` splits, reports its model at checkpoints
(epochs or rounds) through a callback and returns the final model: one model for every site, or
one per site after local fine-tuning. They run the same FLARE-free site code as the FLARE jobs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from fedhealth.models.tabular import TabularNet
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import LocalTrainConfig, train_local
from fedhealth_tools.training.federation import run_federation

# One model for every site, or one per site name (after local fine-tuning).
Model = nn.Module | Mapping[str, nn.Module]
Report = Callable[[int, Model], None]
# A trainer trains on the sites' train splits, reports checkpoints and returns the final model.
Trainer = Callable[[Sequence[HeartSite], Report], Model]


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
