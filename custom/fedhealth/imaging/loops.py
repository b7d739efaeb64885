"""Local training and evaluation of image classifiers (FedAvg / FedProx), free of FLARE.

Binary and multi-label tasks use BCE-with-logits, multi-class cross-entropy. FedProx (Li et al.
2020) adds ``mu / 2 * ||w - w_global||^2``; ``mu = 0`` is FedAvg (McMahan et al. 2017). Per-label
AUC comes from MONAI's ``compute_roc_auc``. The device is ``cuda`` when the site has one, else the
CPU; nothing in a job names a device.

Mixed precision: on CUDA (and only there), unless the task turns it off, the forward pass and the
loss run under ``torch.autocast("cuda", dtype=torch.float16)`` and the loss is scaled by a
``torch.amp.GradScaler`` (skipped steps on overflow, as torch does). The weights, the optimizer and
the FedProx term stay float32 (the term is added outside autocast, so its gradient is exact before
scaling and unscaled with the rest). On the CPU nothing changes: the same operations in the same
order as without the option (a unit test pins it bit for bit). DP-SGD never comes through here: its
Opacus trainer (:mod:`fedhealth.privacy.dp_sgd`) trains in float32, since a loss scaler would scale
the per-example gradients that Opacus clips (the clipping bound would be off by the scale).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from monai.metrics import compute_roc_auc
from torch import nn

from fedhealth.constants import M_ACCURACY, M_AUC, M_LOSS, M_PER_LABEL_AUC
from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.transforms import augment_batch, augmentation
from fedhealth.training.loops import LocalTrainConfig, _batches
from fedhealth.training.metrics import auc as binary_auc

EVAL_BATCH = 512


def default_device() -> torch.device:
    """``cuda`` when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_amp(device: torch.device, mixed_precision: bool) -> bool:
    """Whether to train and predict in float16 autocast: CUDA and the task allows it."""
    return bool(mixed_precision) and device.type == "cuda"


def loss_function(spec: LabelSpec) -> nn.Module:
    """BCE-with-logits for binary and multi-label, cross-entropy for multi-class."""
    return nn.CrossEntropyLoss() if spec.task == "multiclass" else nn.BCEWithLogitsLoss()


def _targets(y: torch.Tensor, spec: LabelSpec, logits: torch.Tensor) -> torch.Tensor:
    if spec.task == "multiclass":
        return y.long()
    return y.float().reshape(logits.shape)


def train_images(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    config: LocalTrainConfig,
    spec: LabelSpec,
    *,
    augment: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    seed: int = 0,
    anchor: list[torch.Tensor] | None = None,
    mixed_precision: bool = True,
) -> dict[str, float]:
    """Train ``model`` in place on one site's images; returns mean loss, steps and images per second.

    Args:
        model: the model, loaded with the global weights (FedProx anchors on them).
        x: images ``(n, C, S, S)`` in [0, 1].
        y: labels (``(n,)`` binary/multi-class, ``(n, K)`` multi-label).
        config: this round's local settings (lr, batch size, steps or epochs, mu, optimizer).
        spec: the label task.
        augment: random affine jitter on each training batch.
        generator: shuffling generator (reproducible runs).
        device: where to train (default: :func:`default_device`).
        seed: seed of the augmentation.
        anchor: the weights FedProx pulls toward (default: ``model``'s weights on entry).
        mixed_precision: float16 autocast and loss scaling when ``device`` is CUDA (no effect on the
            CPU).
    """
    if len(y) == 0:
        raise ValueError("Cannot train on an empty split.")
    device = device or default_device()
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    model.to(device).train()
    if anchor is None and config.mu > 0:
        anchor = [p.detach().clone() for p in model.parameters()]
    anchor = [a.to(device) for a in anchor] if anchor is not None and config.mu > 0 else None
    opt_cls = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam
    kwargs = {"momentum": 0.9} if config.optimizer == "sgd" else {}
    optimizer = opt_cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **kwargs)
    loss_fn = loss_function(spec)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y)
    aug = augmentation(seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen))) if augment else None
    total, steps, seen, start = 0.0, 0, 0, time.perf_counter()
    # A batch of one image cannot train BatchNorm (DenseNet-121 at 32 px ends on a 1x1 map: torch
    # raises); such a last batch of an epoch is skipped in models with BatchNorm, and not counted.
    batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    amp = use_amp(device, mixed_precision)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    for idx in _batches(len(yt), config.batch_size, config.local_steps, config.local_epochs, gen):
        if batchnorm and len(idx) < 2:
            continue
        batch = augment_batch(xt[idx], aug) if aug is not None else xt[idx]
        optimizer.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            logits = model(batch.to(device))
            loss = loss_fn(logits.float(), _targets(yt[idx], spec, logits).to(device))
        total += float(loss.detach())
        if anchor is not None:
            prox = sum(((p - g) ** 2).sum() for p, g in zip(model.parameters(), anchor, strict=True))
            loss = loss + config.mu / 2 * prox
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # unscales first; skips the step on inf/NaN gradients
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        steps += 1
        seen += len(idx)
    seconds = time.perf_counter() - start
    model.cpu()
    return {
        "train_loss": total / max(steps, 1),
        "steps": float(steps),
        "images_per_s": seen / max(seconds, 1e-9),
    }


@torch.no_grad()
def predict_images(
    model: nn.Module,
    x: np.ndarray,
    spec: LabelSpec,
    device: torch.device | None = None,
    *,
    mixed_precision: bool = True,
) -> np.ndarray:
    """Probabilities: ``(n,)`` binary, ``(n, K)`` softmax (multi-class) or sigmoid (multi-label).

    On CUDA with ``mixed_precision`` the forward pass runs in float16 autocast; the probabilities
    are computed from float32 logits either way.
    """
    device = device or default_device()
    amp = use_amp(device, mixed_precision)
    model.to(device).eval()
    outs = []
    for start in range(0, len(x), EVAL_BATCH):
        batch = torch.as_tensor(x[start : start + EVAL_BATCH], dtype=torch.float32).to(device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            logits = model(batch)
        logits = logits.float().cpu()
        outs.append(torch.softmax(logits, dim=1) if spec.task == "multiclass" else torch.sigmoid(logits))
    model.cpu()
    probs = torch.cat(outs).numpy().astype(np.float64)
    return probs.reshape(-1) if spec.task == "binary" else probs


def binary_view(y: np.ndarray, probs: np.ndarray, spec: LabelSpec) -> tuple[np.ndarray, np.ndarray]:
    """One yes/no question per task for the per-site intervals and the deployment gate.

    Binary: the label itself. Multi-class: "not class 0" (e.g. any retinopathy), probability
    ``1 - p(class 0)``. Multi-label: "any finding", probability of the most likely finding.
    """
    if spec.task == "binary":
        return np.asarray(y, dtype=float).ravel(), probs
    if spec.task == "multiclass":
        return (np.asarray(y) > 0).astype(float), 1.0 - probs[:, 0]
    return (np.asarray(y).max(axis=1) > 0).astype(float), probs.max(axis=1)


def finding_views(
    y: np.ndarray, probs: np.ndarray, spec: LabelSpec
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One yes/no question per finding for the per-finding intervals and gate; empty for binary.

    Multi-label: "finding k present", probability ``p_k``. Multi-class: one-vs-rest "class k",
    probability ``p(class k)``. Keys are ``spec.classes`` in the model's output order.
    """
    if spec.task == "binary":
        return {}
    y = np.asarray(y)
    if spec.task == "multiclass":
        yi = y.astype(int).ravel()
        return {name: ((yi == k).astype(float), probs[:, k]) for k, name in enumerate(spec.classes)}
    return {name: ((y[:, k] > 0.5).astype(float), probs[:, k]) for k, name in enumerate(spec.classes)}


def evaluate_images(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    spec: LabelSpec,
    device: torch.device | None = None,
    *,
    mixed_precision: bool = True,
) -> dict:
    """Accuracy, AUC (macro over classes or findings; per label with MONAI) and mean loss on one split."""
    probs = predict_images(model, x, spec, device, mixed_precision=mixed_precision)
    return metrics_from_probs(np.asarray(y), probs, spec)


def metrics_from_probs(y: np.ndarray, probs: np.ndarray, spec: LabelSpec) -> dict:
    """The metrics of :func:`evaluate_images` from predicted probabilities."""
    eps = 1e-7
    if spec.task == "binary":
        yb = y.astype(float).ravel()
        p = np.clip(probs, eps, 1 - eps)
        loss = float(-(yb * np.log(p) + (1 - yb) * np.log(1 - p)).mean())
        return {
            M_ACCURACY: float(((probs > 0.5) == (yb > 0.5)).mean()),
            M_AUC: binary_auc(yb, probs),
            M_LOSS: loss,
        }
    if spec.task == "multiclass":
        yi = y.astype(int).ravel()
        onehot = np.eye(len(spec.classes))[yi]
        loss = float(-np.log(np.clip(probs[np.arange(len(yi)), yi], eps, 1.0)).mean())
        accuracy = float((probs.argmax(axis=1) == yi).mean())
    else:
        onehot = y.astype(float)
        p = np.clip(probs, eps, 1 - eps)
        loss = float(-(onehot * np.log(p) + (1 - onehot) * np.log(1 - p)).mean())
        accuracy = float(((probs > 0.5) == (onehot > 0.5)).mean())
    per_label = [_label_auc(probs[:, k], onehot[:, k]) for k in range(onehot.shape[1])]
    defined = [a for a in per_label if a is not None]
    return {
        M_ACCURACY: accuracy,
        M_AUC: float(np.mean(defined)) if defined else math.nan,
        M_LOSS: loss,
        M_PER_LABEL_AUC: dict(zip(spec.classes, per_label, strict=True)),
    }


def _label_auc(pred: np.ndarray, target: np.ndarray) -> float | None:
    """MONAI's ROC AUC for one label; None when the split holds one class only."""
    if target.min() == target.max():
        return None
    return float(compute_roc_auc(torch.as_tensor(pred), torch.as_tensor(target)))
