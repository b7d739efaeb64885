"""DP-SGD at one site for a whole job: one Opacus privacy engine, sized once, accounted across rounds.

Abadi et al. 2016 ("Deep Learning with Differential Privacy"): per-example clipping to ``C``, Gaussian
noise of standard deviation ``sigma * C``, Poisson sampling with rate ``q = batch / n``. The noise
multiplier ``sigma`` is chosen ONCE for all the job's rounds × local steps, so that the accountant
reaches the target ε only at the end of the job (a new engine each round would restart the count and
under-report ε). After every round the accountant's history and the ledger are written to the site's
run folder; a restarted site process reloads them and keeps counting.

Augmentation multiplicity (``dp.augmult`` = K; De et al. 2022, "Unlocking High-Accuracy Differentially
Private Image Classification through Scale"): every sampled image is augmented K times
(:func:`fedhealth.imaging.transforms.random_affine_batch`), and its per-example gradient is the mean of
the K copies' gradients, averaged before clipping, so each image still contributes one clipped
gradient and the accounting is unchanged.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedhealth.atomic import write_json
from fedhealth.constants import DP_ACCOUNTANT_FILE as ACCOUNTANT_FILE
from fedhealth.constants import DP_LEDGER_FILE as LEDGER_FILE
from fedhealth.constants import M_PRIVACY
from fedhealth.privacy.budget import PrivacyBudgetExhaustedError, check_budget, epsilon_of
from fedhealth.privacy.dp_config import DPConfig
from fedhealth.privacy.ledger import LedgerEntry, PrivacyLedger

log = logging.getLogger(__name__)


def make_dp_compatible(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The model with Opacus's fixes applied (BatchNorm becomes GroupNorm), and what was changed.

    In-place activations (MONAI's DenseNet uses ``ReLU(inplace=True)``) are made out-of-place too:
    Opacus's backward hooks cannot see through them. The server must build the global model the same
    way, so that site and server weights match.
    """
    was_training = model.training
    model.train()  # Opacus validates training-mode modules only
    problems = ModuleValidator.validate(model, strict=False)
    model.train(was_training)
    inplace = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    if not problems and not inplace:
        return model, []
    fixed = ModuleValidator.fix(copy.deepcopy(model)) if problems else copy.deepcopy(model)
    ModuleValidator.validate(fixed.train(), strict=True)
    fixed.train(was_training)
    changes = []
    for reason in sorted({str(p).split(".")[0] for p in problems}):
        count = sum(str(p).split(".")[0] == reason for p in problems)
        changes.append(f"{count} modules replaced ({reason}; BatchNorm becomes GroupNorm)")
    for module in fixed.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    if inplace:
        changes.append(f"{len(inplace)} in-place activations made out-of-place (Opacus backward hooks)")
    log.warning("DP-SGD: model changed for Opacus: %s", "; ".join(changes))
    return fixed, changes


def average_copies(module: nn.Module, k: int) -> None:
    """Replace each parameter's per-copy gradients ``(B*K, ...)`` by the per-image mean ``(B, ...)``.

    Copies of one image are adjacent (``repeat_interleave``). Opacus scales each row to one copy's own
    gradient (its mean loss times the batch length), so the mean of K rows is the image's mean gradient.
    """
    for p in module.parameters():
        sample = getattr(p, "grad_sample", None)
        if sample is None:
            continue
        if isinstance(sample, list):
            raise ValueError("augmult expects one backward pass per DP-SGD step (grad_sample is a list).")
        if sample.shape[0] % k:
            raise ValueError(f"per-example gradients of {sample.shape[0]} rows are not K={k} copies each.")
        p.grad_sample = sample.view(sample.shape[0] // k, k, *sample.shape[1:]).mean(dim=1)


@lru_cache(maxsize=256)
def noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> float:
    """Opacus's ``get_noise_multiplier`` for the whole job's steps (cached: a binary search of ~2 s)."""
    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=accountant,
        )
    )


class PrivateTrainer:
    """A site's DP-SGD trainer for the whole job.

    Args:
        model: a model of the job's architecture (its weights are replaced every round).
        x: the site's training inputs; y: their labels (never leave the site).
        dp: the job's DP settings.
        batch_size: expected Poisson batch size (sample rate ``1 / ceil(n / batch_size)``).
        steps_per_round: DP-SGD steps each round.
        rounds: rounds the noise is sized for.
        optimizer: ``"sgd"`` or ``"adam"`` (its state restarts each round, as in the non-private loop).
        weight_decay: L2 penalty.
        state_dir: the site's run folder for the accountant state and ledger (``None``: memory only).
        budget: the ε this site will not pass (defaults to ``dp.target_epsilon``; a site may set less).
        seed: seeds the Poisson sampling and the noise (``None``: fresh randomness).
    """

    def __init__(
        self,
        model: nn.Module,
        x: np.ndarray,
        y: np.ndarray,
        dp: DPConfig,
        *,
        batch_size: int,
        steps_per_round: int,
        rounds: int,
        optimizer: str = "sgd",
        weight_decay: float = 0.0,
        state_dir: Path | None = None,
        budget: float | None = None,
        seed: int | None = 0,
    ) -> None:
        n = len(y)
        dp.check_batch(batch_size)
        if dp.augmult > 1 and np.asarray(x).ndim != 4:
            raise ValueError(
                f"dp augmult={dp.augmult} augments images (n, C, H, W); this site's training inputs have "
                f"shape {tuple(np.asarray(x).shape)}. Set augmult to 0 for tabular data."
            )
        self.delta = dp.delta_for(n)
        if steps_per_round < 1 or rounds < 1:
            raise ValueError(
                f"DP-SGD needs steps_per_round >= 1 and rounds >= 1, got {steps_per_round}, {rounds}."
            )
        self.dp = dp
        self.steps_per_round = steps_per_round
        self.budget = min(dp.target_epsilon, budget) if budget is not None else dp.target_epsilon
        self.sample_rate = 1.0 / math.ceil(n / batch_size)
        self.noise_multiplier = noise_multiplier(
            dp.target_epsilon, self.delta, self.sample_rate, rounds * steps_per_round, dp.accountant
        )
        fixed, self.changes = make_dp_compatible(copy.deepcopy(model))
        fixed.train()  # Opacus wraps training-mode modules only
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        yt = torch.as_tensor(np.asarray(y), dtype=torch.float32)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        loader = DataLoader(TensorDataset(xt, yt), batch_size=batch_size, generator=gen)
        opt_cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
        self.engine = PrivacyEngine(accountant=dp.accountant)
        noise_gen = torch.Generator().manual_seed(seed + 1) if seed is not None else None
        self.aug_generator = torch.Generator().manual_seed(seed + 2) if seed is not None else None
        made = self.engine.make_private(
            module=fixed,
            optimizer=opt_cls(fixed.parameters(), lr=1.0, weight_decay=weight_decay),
            criterion=nn.BCEWithLogitsLoss(),
            data_loader=loader,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=dp.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode=dp.grad_sample_mode,
            noise_generator=noise_gen,
        )
        if dp.grad_sample_mode == "ghost":
            self.module, self.optimizer, self.criterion, self.loader = made
        else:
            self.module, self.optimizer, self.loader = made
            self.criterion = nn.BCEWithLogitsLoss()
        self._batches = iter(self.loader)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.ledger = PrivacyLedger.load(self._path(LEDGER_FILE), budget=self.budget)
        self._reload_accountant()

    # ----------------------------------------------------------------------------- state
    def _path(self, name: str) -> Path | None:
        return self.state_dir / name if self.state_dir is not None else None

    def _reload_accountant(self) -> None:
        path = self._path(ACCOUNTANT_FILE)
        if path is None or not path.is_file():
            return
        state = json.loads(path.read_text())
        state["history"] = [tuple(h) for h in state["history"]]
        self.engine.accountant.load_state_dict(state)
        log.info("DP-SGD: accountant reloaded after a restart; epsilon so far %.4f", self.epsilon)

    def _save_accountant(self) -> None:
        path = self._path(ACCOUNTANT_FILE)
        if path is None:
            return
        state = self.engine.accountant.state_dict()
        history = [list(h) for h in state["history"]]
        write_json(path, {"history": history, "mechanism": state["mechanism"]}, indent=None)

    @property
    def total_steps(self) -> int:
        return int(sum(h[2] for h in self.engine.accountant.history))

    @property
    def epsilon(self) -> float:
        """ε spent so far at this site's δ (0 before any step)."""
        accountant = self.engine.accountant
        return epsilon_of(accountant.history, mechanism=accountant.mechanism(), delta=self.delta)

    # ----------------------------------------------------------------------------- training
    def check_budget(self, round_index: int) -> float:
        """The ε the next round would reach; past the budget, records and raises the refusal."""
        try:
            return check_budget(
                self.engine.accountant,
                budget=self.budget,
                noise_multiplier=self.noise_multiplier,
                sample_rate=self.sample_rate,
                steps=self.steps_per_round,
                delta=self.delta,
                round_index=round_index,
            )
        except PrivacyBudgetExhaustedError as exc:
            if self.ledger.declined is None:
                self.ledger.decline(round_index, str(exc), exc.spent, exc.predicted)
            raise

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            return next(self._batches)

    def _backward(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Loss and per-example gradients of one batch (with augmult: the mean over K augmented copies)."""
        k = self.dp.augmult
        if k <= 1:
            out = self.module(xb)
            loss = self.criterion(out, yb.view_as(out))
            loss.backward()
            return loss
        from fedhealth.imaging.transforms import random_affine_batch  # MONAI loads for image jobs only

        xk = random_affine_batch(xb.repeat_interleave(k, dim=0), self.aug_generator)
        out = self.module(xk)
        loss = self.criterion(out, yb.repeat_interleave(k, dim=0).view_as(out))
        loss.backward()
        average_copies(self.module, k)
        return loss

    def train_round(self, model: nn.Module, *, lr: float, round_index: int) -> dict[str, float]:
        """One round of DP-SGD from ``model``'s weights; ``model`` receives the result.

        Returns the mean training loss, the steps, and this round's ledger entry (ε so far, δ, ...).
        """
        self.check_budget(round_index)
        inner = self.module._module
        try:
            inner.load_state_dict(model.state_dict())
        except RuntimeError as exc:
            raise ValueError(
                "the global model does not match the site's DP-SGD model; build it with "
                f"fedhealth.privacy.dp_sgd.make_dp_compatible on the server too ({self.changes})"
            ) from exc
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.original_optimizer.state.clear()
        self.module.train()
        total, counted = 0.0, 0
        for _ in range(self.steps_per_round):
            xb, yb = self._next_batch()
            self.optimizer.zero_grad()
            loss = self._backward(xb, yb)
            self.optimizer.step()
            if len(yb):
                total, counted = total + float(loss.detach()), counted + 1
        model.load_state_dict(inner.state_dict())
        self._save_accountant()
        entry = LedgerEntry(
            round=int(round_index),
            epsilon=self.epsilon,
            delta=self.delta,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.dp.max_grad_norm,
            sample_rate=self.sample_rate,
            steps=self.steps_per_round,
            total_steps=self.total_steps,
            accountant=self.dp.accountant,
        )
        self.ledger.record(entry)
        return {
            "train_loss": total / max(counted, 1),
            "steps": float(self.steps_per_round),
            M_PRIVACY: asdict(entry),
        }
