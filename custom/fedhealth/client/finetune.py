"""Fine-tuning: each round the site also fine-tunes a copy of the global model it received, locally.

The simplest personalization baseline (Wang et al. 2019, "Federated Evaluation of On-device
Personalization"): the fine-tuned copy never leaves the site; only its aggregate metrics
(``finetuned_accuracy``, ``finetuned_auc``, ``finetuned_loss``) travel, next to the global model's, and
the last copy is saved in the site's run folder. It works on any task, with the task's own loss.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np

from fedhealth import constants as C
from fedhealth.client.base import AlgorithmContext, ClientAlgorithm, RoundState, register_algorithm
from fedhealth.models.state import to_numpy

FINETUNED_KEYS = (C.M_ACCURACY, C.M_AUC, C.M_LOSS)


@register_algorithm
@dataclass
class FineTune(ClientAlgorithm):
    """Local fine-tuning of the received global model.

    Args:
        epochs: passes over the site's training data.
        lr: fine-tuning learning rate (``None``: the round's learning rate).
    """

    epochs: int = 1
    lr: float | None = None
    name = "finetune"
    _context: AlgorithmContext | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.epochs < 1 or (self.lr is not None and not self.lr > 0):
            raise ValueError(
                f"finetune needs epochs >= 1 and lr > 0 (or null); got {self.epochs}, {self.lr}."
            )

    def start(self, context: AlgorithmContext) -> None:
        self._context = context

    def after_round(self, state: RoundState) -> None:
        context = self._context
        tuned = copy.deepcopy(state.received)
        config = replace(
            state.config, lr=float(self.lr or state.lr), local_steps=0, local_epochs=self.epochs, mu=0.0
        )
        context.site.train(tuned, config, generator=context.generator, seed=state.rnd.round_index)
        metrics = context.site.evaluate(tuned, context.site.round_split)
        state.metrics.update({f"finetuned_{k}": metrics.get(k) for k in FINETUNED_KEYS})
        if context.run_dir is not None:
            context.run_dir.mkdir(parents=True, exist_ok=True)
            np.savez(context.run_dir / C.FINETUNED_MODEL_FILE, **to_numpy(tuned))
