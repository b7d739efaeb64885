"""SCAFFOLD control variates (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging
for Federated Learning", Algorithm 1 with option II), FLARE-free.

A site corrects every local gradient by ``c - c_i`` (server minus site control variate), so its
local steps follow the global gradient direction instead of drifting to its own optimum. After
``K`` local steps at learning rate ``eta_l`` it refreshes its variate with option II::

    c_i+ = c_i - c + (x - y_i) / (K * eta_l)

and sends ``dy_i = y_i - x`` and ``dc_i = c_i+ - c_i``. The server moves
``x += eta_g * mean(dy_i)`` and ``c += |S| / N * mean(dc_i)``.

Weights are ``{name: np.ndarray}`` dicts; the gradient correction is a set of torch hooks, so the
ordinary local loop (:func:`fedhealth.training.loops.train_local`) runs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

Weights = dict[str, np.ndarray]


def zeros_like(weights: Mapping[str, np.ndarray]) -> Weights:
    """A control variate of zeros for every parameter (the paper's initial ``c`` and ``c_i``)."""
    return {k: np.zeros_like(np.asarray(v, dtype="float64")) for k, v in weights.items()}


def _check_keys(name: str, got: Mapping[str, object], want: Mapping[str, object]) -> None:
    if set(got) != set(want):
        raise ValueError(f"{name} must carry the same parameter names as the model; got {sorted(got)}.")


def correction(c_global: Mapping[str, np.ndarray], c_local: Mapping[str, np.ndarray]) -> Weights:
    """The per-parameter gradient correction ``c - c_i``."""
    _check_keys("c_local", c_local, c_global)
    return {k: np.asarray(c_global[k], "float64") - np.asarray(c_local[k], "float64") for k in c_global}


@contextmanager
def corrected_gradients(model: nn.Module, corr: Mapping[str, np.ndarray]) -> Iterator[nn.Module]:
    """Inside the block every gradient of ``model``'s parameters gets ``corr`` added (``g + c - c_i``).

    Raises:
        ValueError: when ``corr`` does not name exactly the model's trainable parameters.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    _check_keys("The correction", corr, params)
    handles = []
    for name, param in params.items():
        delta = torch.as_tensor(np.asarray(corr[name]), dtype=param.dtype).reshape(param.shape)
        handles.append(param.register_hook(lambda grad, delta=delta: grad + delta))
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()


def update_local_control(
    c_local: Mapping[str, np.ndarray],
    c_global: Mapping[str, np.ndarray],
    start: Mapping[str, np.ndarray],
    end: Mapping[str, np.ndarray],
    *,
    steps: int,
    lr: float,
) -> tuple[Weights, Weights]:
    """Option II: ``c_i+ = c_i - c + (x - y_i) / (K eta_l)``; returns ``(c_i+, c_i+ - c_i)``.

    Args:
        c_local: the site's variate ``c_i`` before the round.
        c_global: the server's variate ``c`` the site used this round.
        start: the global weights ``x`` the round started from.
        end: the site's weights ``y_i`` after its local steps.
        steps: ``K``, the number of local optimizer steps taken.
        lr: ``eta_l``, the local learning rate.

    Raises:
        ValueError: on no steps, a non-positive learning rate or mismatched parameter names.
    """
    if steps < 1:
        raise ValueError(
            f"SCAFFOLD needs at least one local step to update its control variate, got {steps}."
        )
    if lr <= 0:
        raise ValueError(f"The local learning rate must be positive, got {lr}.")
    for name, part in (("c_local", c_local), ("start", start), ("end", end)):
        _check_keys(name, part, c_global)
    new = {
        k: np.asarray(c_local[k], "float64")
        - np.asarray(c_global[k], "float64")
        + (np.asarray(start[k], "float64") - np.asarray(end[k], "float64")) / (steps * lr)
        for k in c_global
    }
    return new, {k: new[k] - np.asarray(c_local[k], "float64") for k in new}


def server_update(
    weights: Mapping[str, np.ndarray],
    c_global: Mapping[str, np.ndarray],
    weight_deltas: Sequence[Mapping[str, np.ndarray]],
    control_deltas: Sequence[Mapping[str, np.ndarray]],
    *,
    n_sites: int,
    global_lr: float = 1.0,
    site_weights: Sequence[float] | None = None,
) -> tuple[Weights, Weights]:
    """``x += eta_g * avg(dy_i)`` and ``c += |S| / N * avg(dc_i)``; returns the new ``(x, c)``.

    Args:
        weights: the global model ``x``.
        c_global: the server variate ``c``.
        weight_deltas: each participating site's ``y_i - x``.
        control_deltas: each participating site's ``c_i+ - c_i``.
        n_sites: ``N``, all sites in the federation (``|S|`` is the number that answered).
        global_lr: ``eta_g``.
        site_weights: weights of both averages (sample counts: the weighted objective, and what
            FLARE's weighted aggregator does in ``ScatterAndGatherScaffold``); uniform as in the
            paper if None.
    """
    s = len(weight_deltas)
    if s == 0 or s != len(control_deltas):
        raise ValueError(
            f"Need one control delta per weight delta and at least one; got {s} and {len(control_deltas)}."
        )
    if not 0 < s <= n_sites:
        raise ValueError(f"{s} sites answered but the federation has n_sites={n_sites}.")
    w = np.ones(s) if site_weights is None else np.asarray(site_weights, dtype="float64")
    if len(w) != s or (w < 0).any() or w.sum() <= 0:
        raise ValueError("site_weights must be non-negative, one per site, with a positive sum.")
    w = w / w.sum()
    new_x = {
        k: np.asarray(weights[k], "float64")
        + global_lr * sum(wi * np.asarray(d[k]) for wi, d in zip(w, weight_deltas, strict=True))
        for k in weights
    }
    new_c = {
        k: np.asarray(c_global[k], "float64")
        + (s / n_sites) * sum(wi * np.asarray(d[k]) for wi, d in zip(w, control_deltas, strict=True))
        for k in c_global
    }
    return new_x, new_c
