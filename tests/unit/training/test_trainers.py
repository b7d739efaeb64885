"""Trainers: fine-tuning scope and per-site fine-tuning settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fedhealth.data.site_data import RAW_COLUMNS, SiteTable
from fedhealth.models.tabular import TabularNet
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.training.trainers import finetuned_trainer, restrict_to_output_bias


def _tables() -> dict[str, SiteTable]:
    """Two small sites with valid UCI codes and mixed labels."""
    rng = np.random.default_rng(0)
    out = {}
    for name, (n_pos, n_neg) in {"a": (12, 5), "b": (9, 8)}.items():
        n = n_pos + n_neg
        features = pd.DataFrame({c: rng.integers(0, 2, n).astype("float64") for c in RAW_COLUMNS})
        features["age"] = rng.normal(55, 9, n)
        features["cp"] = rng.integers(1, 5, n).astype("float64")
        features["chol"] = rng.normal(240, 40, n)
        out[name] = SiteTable(features=features, labels=np.array([1.0] * n_pos + [0.0] * n_neg, "float32"))
    return out


def test_bias_only_fine_tuning_moves_only_the_intercept() -> None:
    model = TabularNet(in_features=13, arch="mlp", hidden=4, seed=0)
    restrict_to_output_bias(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["net.3.bias"]


@pytest.mark.parametrize("scope", ["all", "bias"])
def test_per_site_fine_tuning_and_zero_epochs_keeps_the_shared_model(scope: str) -> None:
    sites = [HeartSite(n, t, t, chol_zero_as_missing=False, scaling="site") for n, t in _tables().items()]
    params = {
        "arch": "logreg",
        "seed": 0,
        "lr": 0.1,
        "rounds": 2,
        "local_epochs": 1,
        "batch_size": 4,
        "ft_by_site": {"a": {"ft_lr": 0.5, "ft_epochs": 3, "ft_scope": scope}, "b": {"ft_epochs": 0}},
    }
    reported: list[int] = []
    shared: list = []

    def report(step, model):
        reported.append(step)
        if step == 0:
            shared.append({k: v.clone() for k, v in model.state_dict().items()})

    models = finetuned_trainer(params)(sites, report)
    assert reported == [0, 1, 2, 3]
    for key, value in shared[0].items():
        assert torch.equal(models["b"].state_dict()[key], value)
    changed = {k for k, v in shared[0].items() if not torch.equal(models["a"].state_dict()[k], v)}
    assert changed == ({"net.bias"} if scope == "bias" else {"net.weight", "net.bias"})
