"""Local training and evaluation loops: config checks, exact step counts, FedProx, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fedhealth.models.tabular import TabularNet
from fedhealth.training.loops import LocalTrainConfig, evaluate, predict, train_local

# (config fields, message)
BAD_CONFIGS = [
    ({"lr": 0.0}, "lr must be positive, got 0.0"),
    ({"lr": -0.1}, "lr must be positive"),
    ({"lr": 0.1, "batch_size": 0}, "batch_size must be at least 1, got 0"),
    ({"lr": 0.1, "local_steps": -1}, "Set local_steps > 0 or local_epochs > 0"),
    ({"lr": 0.1, "local_epochs": -1}, "Set local_steps > 0 or local_epochs > 0"),
    ({"lr": 0.1, "local_steps": 0, "local_epochs": 0}, "Set local_steps > 0 or local_epochs > 0"),
    ({"lr": 0.1, "mu": -0.01}, r"mu \(FedProx\) must be non-negative"),
    ({"lr": 0.1, "optimizer": "rmsprop"}, "optimizer must be one of"),
]
# (rows, batch_size, local_steps, local_epochs, expected optimizer steps)
STEP_CASES = [
    (20, 4, 7, 1, 7),  # steps win over epochs
    (10, 4, 7, 0, 7),  # 3 batches per epoch: steps cycle over reshuffled epochs
    (10, 16, 3, 0, 3),  # one batch per epoch
    (10, 4, 0, 1, 3),  # one epoch of ceil(10 / 4) batches
    (10, 4, 0, 2, 6),
]


def _data(n: int, d: int = 13, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype("float32")
    return x, y


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize(("fields", "message"), BAD_CONFIGS)
def test_config_rejects_bad_values(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LocalTrainConfig(**fields)


def test_config_defaults_are_fedavg_sgd() -> None:
    config = LocalTrainConfig(lr=0.1)
    assert (config.batch_size, config.local_steps, config.local_epochs, config.mu, config.optimizer) == (
        4,
        0,
        1,
        0.0,
        "sgd",
    )


@pytest.mark.parametrize(("n", "batch_size", "steps", "epochs", "expected"), STEP_CASES)
def test_train_local_does_exact_number_of_steps(
    n: int, batch_size: int, steps: int, epochs: int, expected: int
) -> None:
    model = TabularNet(in_features=13, seed=0)
    calls: list[int] = []
    model.register_forward_hook(lambda module, inputs, output: calls.append(len(output)))
    x, y = _data(n)
    config = LocalTrainConfig(lr=0.1, batch_size=batch_size, local_steps=steps, local_epochs=epochs)
    stats = train_local(model, x, y, config)
    assert stats["steps"] == float(expected)
    assert len(calls) == expected
    assert all(1 <= size <= batch_size for size in calls)
    if steps == 0:
        assert sum(calls) == n * epochs
    assert math.isfinite(stats["train_loss"]) and stats["train_loss"] > 0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_train_local_is_reproducible_and_learns(optimizer: str) -> None:
    x, y = _data(200)
    config = LocalTrainConfig(lr=0.05, batch_size=8, local_epochs=5, optimizer=optimizer)
    models = [TabularNet(in_features=13, seed=1) for _ in range(2)]
    before = evaluate(models[0], x, y)["loss"]
    for model in models:
        train_local(model, x, y, config, generator=torch.Generator().manual_seed(4))
    assert torch.equal(_flat(models[0]), _flat(models[1]))
    after = evaluate(models[0], x, y)
    assert after["loss"] < before
    assert after["accuracy"] > 0.8


@pytest.mark.parametrize("mu", [0.1, 1.0, 10.0])
def test_fedprox_stays_closer_to_the_global_start(mu: float) -> None:
    x, y = _data(60)
    start = TabularNet(in_features=13, seed=2)
    moved = {}
    for m in (0.0, mu):
        model = TabularNet(in_features=13, seed=2)
        config = LocalTrainConfig(lr=0.1, batch_size=4, local_epochs=2, mu=m)
        train_local(model, x, y, config, generator=torch.Generator().manual_seed(0))
        moved[m] = float((_flat(model) - _flat(start)).norm())
    assert 0 < moved[mu] < moved[0.0]


def test_fedprox_uses_given_global_params() -> None:
    x, y = _data(40)
    config = LocalTrainConfig(lr=0.1, local_epochs=3, mu=5.0)
    anchor = [torch.full_like(p, 0.3) for p in TabularNet(in_features=13, seed=0).parameters()]
    model = TabularNet(in_features=13, seed=0)
    start_gap = float((_flat(model) - 0.3).norm())
    train_local(model, x, y, config, global_params=anchor, generator=torch.Generator().manual_seed(0))
    assert float((_flat(model) - 0.3).norm()) < 0.5 * start_gap


def _constant(logit: float, d: int = 13) -> TabularNet:
    model = TabularNet(in_features=d, seed=0)
    with torch.no_grad():
        model.net.weight.zero_()
        model.net.bias.fill_(logit)
    return model


# (labels, constant logit, accuracy)
EVAL_CASES = [
    (np.array([1, 1, 0, 1], dtype="float32"), 2.0, 0.75),
    (np.array([1, 1, 0, 1], dtype="float32"), -2.0, 0.25),
    (np.array([1, 1, 1], dtype="float32"), 1.0, 1.0),
    (np.array([0, 0, 0], dtype="float32"), 1.0, 0.0),
]


@pytest.mark.parametrize(("labels", "logit", "acc"), EVAL_CASES)
def test_evaluate_constant_model(labels: np.ndarray, logit: float, acc: float) -> None:
    x = np.zeros((len(labels), 13), dtype="float32")
    metrics = evaluate(_constant(logit), x, labels)
    assert metrics["accuracy"] == pytest.approx(acc)
    p = 1 / (1 + math.exp(-logit))
    expected_loss = -np.mean(labels * math.log(p) + (1 - labels) * math.log(1 - p))
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)
    if len(np.unique(labels)) < 2:
        assert math.isnan(metrics["auc"])
    else:
        assert metrics["auc"] == pytest.approx(0.5)  # ties everywhere


def test_evaluate_ranks_perfectly_separable_data() -> None:
    x, y = _data(100)
    model = _constant(0.0)
    with torch.no_grad():
        model.net.weight[0, 0] = 100.0
    x = x.copy()
    x[:, 0] = np.where(y > 0, 1.0, -1.0)
    metrics = evaluate(model, x, y)
    assert metrics["accuracy"] == 1.0 and metrics["auc"] == 1.0
    assert 0.0 <= metrics["loss"] < 1e-6
    probs = predict(model, x)
    assert probs.shape == (100,) and ((probs >= 0) & (probs <= 1)).all()
