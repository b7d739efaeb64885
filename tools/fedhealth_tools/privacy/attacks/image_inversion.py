"""Reconstruct a site's training images from one update, as a compromised server would.

The server sees the weights it sent (``received`` by the site) and the weights the site sent back;
their difference is the site's update. The attacker knows the architecture, the loss
(BCE-with-logits on one logit, the kit's binary imaging task), the site's optimizer and learning
rate, the number of local steps E and the batch size, and that the site took all E steps on the
same n images (``n_train == batch``). Dummy images start from noise in the site's input space (per
image z-scored, :func:`fedhealth.imaging.transforms.prepare`) and are optimized so that E simulated
local steps on them reproduce the observed update:

* ``ig``: Inverting Gradients (Geiping et al. 2020, "Inverting Gradients - How easy is it to break
  privacy in federated learning?", NeurIPS): cosine distance between simulated and observed update
  plus a total-variation prior, signed Adam on the images, step decay, several restarts, the best by
  matching loss kept. E > 1 is their FedAvg variant: the E steps are simulated differentiably
  (:func:`torch.func.functional_call` with ``create_graph``).
* ``dlg``: Deep Leakage from Gradients (Zhu et al. 2019, NeurIPS): squared L2 distance, L-BFGS.

Labels: for n > 1 the attacker is given them (the strong attacker of Geiping et al.). For n == 1
``labels=None`` infers the label as iDLG does (Zhao et al. 2020, "iDLG: Improved Deep Leakage from
Gradients"): with BCE on one logit the gradient of the last bias is ``sigmoid(z) - y``, negative for
y = 1 and positive for y = 0 at every step, so the sign of the bias update gives the label under SGD
(with momentum) and Adam alike. If the bias was not sent (sparsified update) both labels are tried
and the better match kept.

Adam: a fresh Adam's first step is ``lr * g / (|g| + 1e-8)``, about ``lr * sign(g)``, whose derivative
is zero almost everywhere, so matching it gives the images no gradient. The simulation therefore
uses a smoothed Adam, ``m_hat / sqrt(v_hat + eps^2)`` with a large ``eps`` (``adam_smoothing`` times
the RMS of each tensor's first simulated gradient), annealed geometrically to a small one over the
iterations. Only the sign pattern of the gradient leaks at E = 1, so Adam updates leak far less than
SGD ones: on one PneumoniaMNIST image at the small CNN's random init (300 iterations) SGD gives SSIM
about 0.97, Adam about 0.56, which is what the mean X-ray of another site already scores.

Sparsified updates (top-k): ``mask`` says which coordinates the site sent; only those are matched.
Buffers (BatchNorm statistics) are taken from ``received`` and not matched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedhealth_tools.privacy.attacks.local_steps import SiteTraining, simulate_update

METHODS = ("ig", "dlg")
LBFGS_CHUNK = 20  # L-BFGS evaluations per step call (torch's default max_iter), DLG
LR_DECAY = (3 / 8, 5 / 8, 7 / 8)  # step decay of the image optimizer (x0.1 each), Geiping et al.


@dataclass(frozen=True)
class InversionConfig:
    """How hard the attacker tries.

    Args:
        method: ``ig`` (Inverting Gradients) or ``dlg`` (DLG, L2 + L-BFGS).
        iterations: optimizer iterations per restart (for ``dlg``: L-BFGS function evaluations).
        step_size: learning rate of the image optimizer (Adam for ``ig``, 0.1 as Geiping et al.;
            L-BFGS for ``dlg``, where 1.0 with its line search is the usual choice).
        tv_weight: weight of the total-variation prior (``ig`` only).
        restarts: independent random starts; the one with the lowest matching loss is returned.
        seed: seed of the random starts.
        adam_smoothing: (start, end) of the smoothed-Adam ``eps`` relative to the gradient's RMS,
            annealed geometrically; used only when the site's optimizer is Adam.
        project_zscore: after each step, z-score each dummy image (the site's preprocessing makes
            every image mean 0, std 1; ``ig`` only). Off by default: on 8 PneumoniaMNIST images
            (SGD, E = 1, batch 8) it lowered SSIM (0.41 against 0.48 at 400 iterations).
    """

    method: str = "ig"
    iterations: int = 300
    step_size: float = 0.1
    tv_weight: float = 1e-2
    restarts: int = 2
    seed: int = 0
    adam_smoothing: tuple[float, float] = (1.0, 0.01)
    project_zscore: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"InversionConfig.method must be one of {METHODS}, not {self.method!r}.")
        if self.iterations < 1 or self.restarts < 1:
            raise ValueError(
                f"InversionConfig needs iterations >= 1 and restarts >= 1, got {self.iterations} and "
                f"{self.restarts}."
            )
        if self.step_size <= 0 or self.tv_weight < 0 or min(self.adam_smoothing) <= 0:
            raise ValueError("InversionConfig needs step_size > 0, tv_weight >= 0 and adam_smoothing > 0.")


def invert_image_update(
    make_model: Callable[[], nn.Module],
    received: Mapping[str, np.ndarray],
    sent: Mapping[str, np.ndarray],
    *,
    n_images: int,
    image_shape: tuple[int, int, int],
    labels: np.ndarray | None,
    optimizer: str,
    lr: float,
    local_steps: int,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    mask: Mapping[str, np.ndarray] | None = None,
    config: InversionConfig = InversionConfig(),
) -> np.ndarray:
    """Reconstruct the n images a site trained on from the weights it received and sent.

    Args:
        make_model: builds the architecture (e.g. ``build_image_model("small_cnn", in_channels=1,
            num_classes=1)``); its own weights are not used.
        received: the global weights the site started from (name -> array, a numpy state dict).
        sent: the weights the site sent back after ``local_steps`` steps.
        n_images: images in the site's batch (the site trained on these n images only).
        image_shape: ``(C, H, W)`` of one image.
        labels: 0/1 labels ``(n,)``, or ``None`` to infer them (iDLG; n == 1 only).
        optimizer: the site's optimizer, ``sgd`` or ``adam`` (torch defaults, fresh state).
        lr: the site's learning rate.
        local_steps: E, the site's optimizer steps on the batch.
        momentum: the site's SGD momentum (the kit's image loop uses 0.9; irrelevant at E = 1).
        weight_decay: the site's weight decay.
        mask: name -> bool array, the coordinates the site sent (top-k); ``None``: all.
        config: the attacker's settings.

    Returns:
        float32 ``(n, C, H, W)`` reconstructions in the site's (z-scored) input space.

    Raises:
        ValueError: for inconsistent arguments (the message names the one at fault).
    """
    site = SiteTraining(optimizer, float(lr), int(local_steps), float(momentum), float(weight_decay))
    if n_images < 1 or len(image_shape) != 3:
        raise ValueError(
            f"invert_image_update needs n_images >= 1 and image_shape (C, H, W), got {n_images} and "
            f"{tuple(image_shape)}."
        )
    model = make_model().eval()
    names = [n for n, _ in model.named_parameters()]
    params, buffers = _split_state(model, received, names)
    target = _observed_update(received, sent, mask, names)
    if labels is None:
        if n_images != 1:
            raise ValueError(f"labels=None (iDLG inference) needs n_images == 1, got {n_images}.")
        candidates = infer_label(received, sent, mask=mask)
    else:
        lab = np.asarray(labels, dtype=np.float32).reshape(-1)
        if lab.shape != (n_images,) or not np.isin(lab, (0.0, 1.0)).all():
            raise ValueError(f"labels must be {n_images} values in {{0, 1}}, got shape {lab.shape}.")
        candidates = [lab]
    best, best_loss = None, float("inf")
    for lab in candidates:
        y = torch.as_tensor(lab)
        for r in range(config.restarts):
            gen = torch.Generator().manual_seed(config.seed * 1000 + r)
            x0 = torch.randn((n_images, *image_shape), generator=gen)
            x, loss = _attack(model, params, buffers, target, x0, y, site, config)
            if loss < best_loss:
                best, best_loss = x, loss
    return best.numpy().astype(np.float32)


def _split_state(model: nn.Module, received: Mapping[str, np.ndarray], names: list[str]):
    missing = [n for n in list(names) + [b for b, _ in model.named_buffers()] if n not in received]
    if missing:
        raise ValueError(f"received lacks weights the model has: {missing[:5]}.")
    params = {n: torch.as_tensor(np.asarray(received[n]), dtype=torch.float32) for n in names}
    buffers = {b: torch.as_tensor(np.asarray(received[b])) for b, _ in model.named_buffers()}
    return params, buffers


def _observed_update(received, sent, mask, names) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """name -> (sent - received, mask as float) over the model's parameters."""
    out = {}
    for n in names:
        if n not in sent:
            raise ValueError(f"sent lacks the parameter {n!r}.")
        d = np.asarray(sent[n], dtype=np.float32) - np.asarray(received[n], dtype=np.float32)
        m = np.ones_like(d) if mask is None or n not in mask else np.asarray(mask[n], dtype=np.float32)
        if m.shape != d.shape:
            raise ValueError(f"mask[{n!r}] has shape {m.shape}, the parameter {d.shape}.")
        out[n] = (torch.as_tensor(d * m), torch.as_tensor(m))
    if sum(float(m.sum()) for _, m in out.values()) == 0:
        raise ValueError("The mask keeps no coordinate of the update: nothing to match.")
    return out


def infer_label(
    received: Mapping[str, np.ndarray],
    sent: Mapping[str, np.ndarray],
    *,
    mask: Mapping[str, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """The label of a one-image update (iDLG, Zhao et al. 2020), as the candidates to try.

    With BCE on one logit the last bias's gradient is ``sigmoid(z) - y`` (negative iff y = 1) at
    every local step, so its update is positive iff y = 1. The last bias is the last key of
    ``received`` (state-dict order) ending in ``bias``. Returns ``[label]``, or both labels when the
    mask says the bias was not sent.

    Raises:
        ValueError: the model has no one-value last bias (not a one-logit model).
    """
    bias = next((n for n in reversed(list(received)) if n.endswith("bias")), None)
    if bias is None or np.asarray(received[bias]).size != 1:
        raise ValueError(
            "labels=None needs a one-logit model whose last state-dict key ending in 'bias' has one "
            f"value; found {bias!r}."
        )
    if mask is not None and bias in mask and not np.asarray(mask[bias]).any():
        return [np.zeros(1, np.float32), np.ones(1, np.float32)]
    step = float(np.asarray(sent[bias]).ravel()[0] - np.asarray(received[bias]).ravel()[0])
    return [np.full(1, 1.0 if step > 0 else 0.0, np.float32)]


def _distance(sim, target, method: str) -> torch.Tensor:
    """Cosine distance (``ig``) or squared L2 relative to the observed update's (``dlg``), over all sent
    coordinates jointly (Geiping et al. match all layers at once). The relative L2 is Zhu et al.'s
    distance divided by a constant, so that L-BFGS's tolerances do not stop it at the tiny scale of
    ``lr * g``."""
    dot, ns, nt, l2 = 0.0, 0.0, 0.0, 0.0
    for n, (obs, m) in target.items():
        s = sim[n] * m
        if method == "dlg":
            l2 = l2 + ((s - obs) ** 2).sum()
        else:
            dot, ns, nt = dot + (s * obs).sum(), ns + s.pow(2).sum(), nt + obs.pow(2).sum()
    if method == "dlg":
        return l2 / (sum(obs.pow(2).sum() for obs, _ in target.values()) + 1e-30)
    return 1 - dot / (ns.sqrt() * nt.sqrt() + 1e-12)


def _tv(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def _zscore(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-6)


def _attack(model, params, buffers, target, x0, y, site: SiteTraining, config: InversionConfig):
    """One restart; returns the images and their final matching loss."""
    x = (_zscore(x0) if config.project_zscore and config.method == "ig" else x0).requires_grad_(True)
    smooth0, smooth1 = config.adam_smoothing
    adam = site.optimizer == "adam"

    def eps_at(it: int) -> float | None:
        frac = it / max(config.iterations - 1, 1)
        return smooth0 * (smooth1 / smooth0) ** frac if adam else None

    if config.method == "dlg":
        opt = torch.optim.LBFGS(
            [x], lr=config.step_size, max_iter=LBFGS_CHUNK, history_size=100, line_search_fn="strong_wolfe"
        )
        chunks = -(-config.iterations // LBFGS_CHUNK)
        for chunk in range(chunks):  # chunks, so that the smoothed-Adam eps can anneal
            eps = eps_at(chunk * (config.iterations - 1) // max(chunks - 1, 1))

            def closure(eps: float | None = eps) -> torch.Tensor:
                loss = _distance(simulate_update(model, params, buffers, x, y, site, eps), target, "dlg")
                (x.grad,) = torch.autograd.grad(loss, x)
                return loss.detach()

            opt.step(closure)
    else:
        opt = torch.optim.Adam([x], lr=config.step_size)
        milestones = [int(f * config.iterations) for f in LR_DECAY]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
        for it in range(config.iterations):
            sim = simulate_update(model, params, buffers, x, y, site, eps_at(it))
            loss = _distance(sim, target, "ig") + config.tv_weight * _tv(x)
            (grad,) = torch.autograd.grad(loss, x)
            x.grad = grad.sign()  # signed gradients, as Geiping et al.'s reference code
            opt.step()
            sched.step()
            if config.project_zscore:
                with torch.no_grad():
                    x.copy_(_zscore(x))
    xf = x.detach()
    final = _distance(
        simulate_update(model, params, buffers, xf, y, site, eps_at(config.iterations - 1)),
        target,
        config.method,
    )
    return xf, float(final.detach())
