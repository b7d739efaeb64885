"""Ditto (Li et al. 2021, "Ditto: Fair and Robust Federated Learning Through Personalization").

Each round the site does its share of the global model's training as usual, then trains its own personal
model toward the global model it received (:func:`fedhealth.algorithms.ditto.train_personal`). The
personal model never leaves the site: it is saved in the site's run folder, and only its aggregate
metrics (``personal_accuracy``, ``personal_auc``, ``personal_loss``) travel with the round's metrics.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedhealth import constants as C
from fedhealth.algorithms.ditto import train_personal
from fedhealth.client.base import AlgorithmContext, ClientAlgorithm, RoundState, register_algorithm
from fedhealth.models.state import to_numpy

PERSONAL_KEYS = (C.M_ACCURACY, C.M_AUC, C.M_LOSS)


@register_algorithm
@dataclass
class Ditto(ClientAlgorithm):
    """Ditto's personal model.

    Args:
        lam: Ditto's ``lambda`` (0: purely local; large: stays at the global model).
        lr: learning rate of the personal model (``None``: the round's learning rate).
        epochs: passes over the site's data per round for the personal model.
    """

    lam: float
    lr: float | None = None
    epochs: int = 1
    name = "ditto"
    _context: AlgorithmContext | None = field(default=None, init=False, repr=False)
    _personal: nn.Module | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.lam >= 0:
            raise ValueError(f"ditto lam must be non-negative, got {self.lam}.")
        if (self.lr is not None and not self.lr > 0) or self.epochs < 1:
            raise ValueError(f"ditto needs lr > 0 (or null) and epochs >= 1; got {self.lr}, {self.epochs}.")

    def check_site(self, site) -> None:
        if not site.binary:
            raise ValueError(
                "ditto's personal model trains with a binary loss; this task's labels are not binary."
            )

    def start(self, context: AlgorithmContext) -> None:
        self._context = context

    def after_round(self, state: RoundState) -> None:
        context = self._context
        if self._personal is None:
            self._personal = copy.deepcopy(state.received)
        x, y = context.site.arrays("train")
        stats = train_personal(
            self._personal,
            state.received,
            x,
            y,
            lam=self.lam,
            lr=float(self.lr or state.lr),
            epochs=self.epochs,
            batch_size=state.config.batch_size,
            generator=context.generator or torch.Generator().manual_seed(0),
        )
        personal = context.site.evaluate(self._personal, context.site.round_split)
        state.metrics.update({f"personal_{k}": personal.get(k) for k in PERSONAL_KEYS})
        state.metrics["personal_train_loss"] = stats["personal_train_loss"]
        if context.run_dir is not None:
            context.run_dir.mkdir(parents=True, exist_ok=True)
            np.savez(context.run_dir / C.PERSONAL_MODEL_FILE, **to_numpy(self._personal))
        state.notes.append(
            f"personal model (lambda={self.lam}): accuracy={personal.get(C.M_ACCURACY)} "
            f"loss={personal.get(C.M_LOSS)}"
        )

    @property
    def personal(self) -> nn.Module | None:
        """The site's personal model (it stays at the site)."""
        return self._personal
