"""Ditto personal models (Li et al. 2021, "Ditto: Fair and Robust Federated Learning Through
Personalization"), FLARE-free.

Besides its share of the global model's training, each site keeps a personal model ``v`` that
minimizes its own loss plus ``lambda / 2 * ||v - w||^2`` toward the current global model ``w``.
The paper takes plain gradient steps on that sum; here the proximal term is applied in its exact
(implicit) form after each gradient step of the site's loss::

    v = v - eta * grad F_k(v)
    v = (v + eta * lambda * w) / (1 + eta * lambda)

which is the same update to first order, stays stable for any ``lambda`` (an explicit step
diverges once ``eta * lambda > 2``), keeps ``lambda = 0`` as local training and reaches the
global model exactly as ``lambda -> infinity``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def train_personal(
    personal: nn.Module,
    global_model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    lam: float,
    lr: float,
    epochs: int = 1,
    batch_size: int = 4,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Train the personal model in place for ``epochs`` passes; returns its mean training loss.

    Args:
        personal: the site's personal model ``v`` (same architecture as the global model).
        global_model: the current global model ``w`` (not changed).
        x: scaled features ``(n, d)`` or images ``(n, C, S, S)``; y: labels 0/1 ``(n,)``.
        lam: Ditto's ``lambda`` (0: purely local; large: stays at the global model).
        lr: personal learning rate ``eta``.
        epochs: passes over the site's data.
        batch_size: mini-batch size.
        generator: random generator for shuffling.

    Raises:
        ValueError: on a negative ``lambda``, a non-positive learning rate or an empty split.
    """
    if lam < 0:
        raise ValueError(f"Ditto's lambda must be non-negative, got {lam}.")
    if lr <= 0 or epochs < 1 or batch_size < 1:
        raise ValueError(f"Need lr > 0, epochs >= 1 and batch_size >= 1; got {lr}, {epochs}, {batch_size}.")
    if len(y) == 0:
        raise ValueError("Cannot train a personal model on an empty split.")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    anchor = [p.detach().clone() for p in global_model.parameters()]
    optimizer = torch.optim.SGD(personal.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    shrink = 1.0 / (1.0 + lr * lam) if np.isfinite(lam) else 0.0
    personal.train()
    total, steps = 0.0, 0
    for _ in range(epochs):
        for idx in torch.randperm(len(yt), generator=gen).split(batch_size):
            optimizer.zero_grad()
            logits = personal(xt[idx])
            loss = loss_fn(logits, yt[idx].reshape(logits.shape))  # (n,) or (n, 1) heads
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for p, w in zip(personal.parameters(), anchor, strict=True):
                    p.mul_(shrink).add_(w, alpha=1.0 - shrink)
            total += float(loss.detach())
            steps += 1
    return {"personal_train_loss": total / steps, "steps": float(steps)}
