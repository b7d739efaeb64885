"""Ditto's personal model: lambda -> infinity is the global model, lambda = 0 is local training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedhealth.algorithms.ditto import train_personal
from fedhealth.models.tabular import TabularNet
from fedhealth.training.loops import LocalTrainConfig, train_local

RNG = np.random.default_rng(1)
X = RNG.normal(size=(40, 5)).astype("float32")
Y = (X[:, 0] + 0.3 * RNG.normal(size=40) > 0).astype("float32")


def _models() -> tuple[TabularNet, TabularNet]:
    return TabularNet(in_features=5, arch="logreg", seed=0), TabularNet(in_features=5, arch="logreg", seed=1)


def _distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(
        float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


@pytest.mark.parametrize(("lam", "max_distance"), [(1e12, 1e-9), (float("inf"), 0.0)])
def test_huge_lambda_keeps_the_personal_model_at_the_global_one(lam, max_distance):
    global_model, personal = _models()
    assert _distance(global_model, personal) > 1e-2
    train_personal(personal, global_model, X, Y, lam=lam, lr=0.1, epochs=3)
    assert _distance(global_model, personal) <= max_distance


def test_zero_lambda_is_plain_local_training():
    global_model, personal = _models()
    local = TabularNet(in_features=5, arch="logreg", seed=1)
    train_personal(
        personal, global_model, X, Y, lam=0.0, lr=0.1, epochs=2, generator=torch.Generator().manual_seed(3)
    )
    config = LocalTrainConfig(lr=0.1, batch_size=4, local_epochs=2)
    train_local(local, X, Y, config, generator=torch.Generator().manual_seed(3))
    assert _distance(personal, local) < 1e-6


@pytest.mark.parametrize("lam", [0.0, 0.1, 1.0, 10.0])
def test_distance_to_global_shrinks_as_lambda_grows(lam):
    global_model, personal = _models()
    with torch.no_grad():
        for p, g in zip(personal.parameters(), global_model.parameters(), strict=True):
            p.copy_(g)
    train_personal(personal, global_model, X, Y, lam=lam, lr=0.1, epochs=2)
    ref_global, ref = _models()
    with torch.no_grad():
        for p, g in zip(ref.parameters(), ref_global.parameters(), strict=True):
            p.copy_(g)
    train_personal(ref, ref_global, X, Y, lam=lam * 10 + 1.0, lr=0.1, epochs=2)
    assert _distance(ref, ref_global) < _distance(personal, global_model)


@pytest.mark.parametrize(("kwargs", "message"), [({"lam": -1.0}, "non-negative"), ({"lr": 0.0}, "lr > 0")])
def test_bad_arguments_are_refused(kwargs, message):
    global_model, personal = _models()
    args = {"lam": 1.0, "lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        train_personal(personal, global_model, X, Y, **args)
