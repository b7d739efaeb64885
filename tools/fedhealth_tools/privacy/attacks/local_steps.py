"""The site's E local steps on a batch, written so that the update is differentiable in the images.

An attacker who matches a multi-step update (Geiping et al. 2020, FedAvg variant) must replay the
site's optimizer: plain or momentum SGD and Adam as torch implements them (fresh state each round,
``weight_decay`` added to the gradient, no dampening or Nesterov, Adam's bias correction), on
BCE-with-logits over one logit (the kit's binary imaging loss, mean over the batch). Each step's
gradient is taken with ``create_graph=True`` through :func:`torch.func.functional_call`, so the
update is a function of the images. With ``eps_scale`` Adam's denominator becomes
``sqrt(v_hat + eps^2)``, a smooth surrogate of ``|g|`` (see :mod:`.image_inversion`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

SITE_OPTIMIZERS = ("sgd", "adam")
ADAM_BETAS = (0.9, 0.999)  # torch defaults, as the site's optimizer


@dataclass(frozen=True)
class SiteTraining:
    """What the attacker knows about the site's local training.

    Args:
        optimizer: ``sgd`` or ``adam`` (torch defaults, fresh state each round).
        lr: learning rate.
        steps: local steps E, all on the same batch.
        momentum: SGD momentum (the kit's image loop uses 0.9).
        weight_decay: the optimizer's L2 penalty.
    """

    optimizer: str
    lr: float
    steps: int
    momentum: float = 0.9
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in SITE_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {SITE_OPTIMIZERS}, not {self.optimizer!r}.")
        if self.lr <= 0 or self.steps < 1 or self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(
                f"SiteTraining needs lr > 0, steps >= 1, momentum >= 0, weight_decay >= 0; got {self.lr}, "
                f"{self.steps}, {self.momentum}, {self.weight_decay}."
            )


def simulate_update(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    site: SiteTraining,
    eps_scale: float | None = None,
) -> dict[str, torch.Tensor]:
    """The site's E local steps on images ``x``, differentiable in ``x``; returns name -> update.

    ``eps_scale`` is the smoothed-Adam ``eps`` relative to each tensor's first-gradient RMS (None: torch's
    Adam, eps = 1e-8).
    """
    names = list(params)
    cur = [params[n].detach().requires_grad_(True) for n in names]
    start = cur
    m = [torch.zeros_like(p) for p in cur]
    v = [torch.zeros_like(p) for p in cur]
    eps = [1e-8] * len(cur)
    b1, b2 = ADAM_BETAS
    for t in range(1, site.steps + 1):
        logits = functional_call(model, {**dict(zip(names, cur, strict=True)), **buffers}, (x,))
        loss = F.binary_cross_entropy_with_logits(logits.reshape(-1), y)
        grads = torch.autograd.grad(loss, cur, create_graph=True)
        new = []
        for i, (p, g) in enumerate(zip(cur, grads, strict=True)):
            if site.weight_decay:
                g = g + site.weight_decay * p
            if site.optimizer == "sgd":
                m[i] = g if t == 1 or not site.momentum else site.momentum * m[i] + g
                new.append(p - site.lr * m[i])
                continue
            if t == 1 and eps_scale is not None:
                eps[i] = eps_scale * float(g.detach().pow(2).mean().sqrt()) + 1e-12
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            new.append(p - site.lr * m_hat / torch.sqrt(v_hat + eps[i] ** 2))
        cur = new
    return {n: c - s for n, c, s in zip(names, cur, start, strict=True)}
