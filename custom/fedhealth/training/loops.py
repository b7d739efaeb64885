"""Local training (FedAvg / FedProx) and evaluation loops for binary tabular models.

FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks") adds
``mu / 2 * ||w - w_global||^2`` to each site's loss; ``mu = 0`` is plain FedAvg (McMahan et al.
2017). The loops are plain torch and know nothing about FLARE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedhealth.constants import M_ACCURACY, M_AUC, M_LOSS
from fedhealth.training.metrics import accuracy, auc

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class LocalTrainConfig:
    """How a site trains in one round.

    Args:
        lr: learning rate for this round.
        batch_size: mini-batch size.
        local_steps: optimizer steps per round; when 0, ``local_epochs`` passes over the data.
        local_epochs: passes over the data per round (used when ``local_steps`` is 0).
        mu: FedProx proximal weight; 0 is FedAvg.
        optimizer: ``"sgd"`` or ``"adam"``.
        weight_decay: L2 penalty of the optimizer.
    """

    lr: float
    batch_size: int = 4
    local_steps: int = 0
    local_epochs: int = 1
    mu: float = 0.0
    optimizer: str = "sgd"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")
        if (
            self.local_steps < 0
            or self.local_epochs < 0
            or (self.local_steps == 0 and self.local_epochs == 0)
        ):
            raise ValueError("Set local_steps > 0 or local_epochs > 0.")
        if self.mu < 0:
            raise ValueError(f"mu (FedProx) must be non-negative, got {self.mu}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}.")


def local_settings(**settings: object) -> dict:
    """A job's local-training settings (every :class:`LocalTrainConfig` field but ``lr``), checked.

    Executors call it in ``__init__`` so a bad job config fails at start, not in a round; the
    round's learning rate comes with each task.
    """
    LocalTrainConfig(lr=1.0, **settings)  # type: ignore[arg-type]
    return dict(settings)


def _batches(n: int, batch_size: int, steps: int, epochs: int, gen: torch.Generator):
    """Index batches: ``steps`` batches cycling over shuffled epochs, or ``epochs`` full passes."""
    if steps > 0:
        done = 0
        while done < steps:
            for batch in torch.randperm(n, generator=gen).split(batch_size):
                yield batch
                done += 1
                if done == steps:
                    return
    else:
        for _ in range(epochs):
            yield from torch.randperm(n, generator=gen).split(batch_size)


def train_local(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: LocalTrainConfig,
    *,
    global_params: list[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Train ``model`` in place on one site's data; returns the mean training loss and step count.

    Args:
        model: the model, loaded with the global weights.
        x: scaled features, shape ``(n, d)``.
        y: labels 0/1, shape ``(n,)``.
        config: this round's local training settings.
        global_params: the global weights for the FedProx term (copied from ``model`` if None).
        generator: random generator for shuffling (reproducible runs).
    """
    if len(y) == 0:
        raise ValueError("Cannot train on an empty split.")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    if global_params is None and config.mu > 0:
        global_params = [p.detach().clone() for p in model.parameters()]
    opt_cls = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    total, steps = 0.0, 0
    for idx in _batches(len(yt), config.batch_size, config.local_steps, config.local_epochs, gen):
        optimizer.zero_grad()
        loss = loss_fn(model(xt[idx]), yt[idx])
        total += float(loss.detach())
        if config.mu > 0:
            prox = sum(((p - g) ** 2).sum() for p, g in zip(model.parameters(), global_params, strict=True))
            loss = loss + config.mu / 2 * prox
        loss.backward()
        optimizer.step()
        steps += 1
    return {"train_loss": total / max(steps, 1), "steps": float(steps)}


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Probabilities of the positive class."""
    model.eval()
    return torch.sigmoid(model(torch.as_tensor(x, dtype=torch.float32))).numpy()


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy (threshold 0.5), ROC AUC and mean BCE loss on one split."""
    probs = predict(model, x)
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    loss = float(-(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)).mean())
    return {M_ACCURACY: accuracy(y, probs), M_AUC: auc(y, probs), M_LOSS: loss}
