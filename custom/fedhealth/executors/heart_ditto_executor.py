"""Site executor for Ditto (Li et al. 2021, "Ditto: Fair and Robust Federated Learning Through
Personalization").

Each round the site does its share of the global model's training exactly as
:class:`HeartExecutor` (FedAvg / FedProx), and then trains its own personal model toward the
global model it received, with :func:`fedhealth.algorithms.ditto.train_personal`. The personal
model never leaves the site: it is saved in the site's run folder, and only its aggregate test
metrics (``personal_accuracy``, ``personal_auc``, ``personal_loss``) travel with the round's
metrics, next to the global model's, so the report can show personal vs global per site.
"""

from __future__ import annotations

import copy

import numpy as np
from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

from fedhealth import constants as C
from fedhealth.algorithms.ditto import train_personal
from fedhealth.executors.heart_executor import HeartExecutor
from fedhealth.executors.site_executor import clean_metrics
from fedhealth.models.state import to_numpy


class HeartDittoExecutor(HeartExecutor):
    """:class:`HeartExecutor` that also keeps a Ditto personal model.

    Args:
        ditto_lambda: Ditto's ``lambda`` (0: purely local; large: stays at the global model).
        ditto_lr: learning rate of the personal model (None: the round's learning rate).
        ditto_epochs: passes over the site's data per round for the personal model.
        **kwargs: the :class:`HeartExecutor` settings.
    """

    def __init__(
        self, *, ditto_lambda: float, ditto_lr: float | None = None, ditto_epochs: int = 1, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if ditto_lambda < 0:
            raise ValueError(f"ditto_lambda must be non-negative, got {ditto_lambda}.")
        if (ditto_lr is not None and ditto_lr <= 0) or ditto_epochs < 1:
            raise ValueError(
                f"Need ditto_lr > 0 (or null) and ditto_epochs >= 1; got {ditto_lr}, {ditto_epochs}."
            )
        self.ditto_lambda = ditto_lambda
        self.ditto_lr = ditto_lr
        self.ditto_epochs = ditto_epochs
        self._personal = None

    def _train(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        received, dxo = self._model_from(shareable)
        result = super()._train(shareable, fl_ctx)
        out = from_shareable(result)
        if self._personal is None:
            self._personal = copy.deepcopy(received)
        x, y = self._site.arrays("train")
        lr = float(self.ditto_lr or dxo.get_meta_prop(C.META_LEARNING_RATE))
        stats = train_personal(
            self._personal,
            received,
            x,
            y,
            lam=self.ditto_lambda,
            lr=lr,
            epochs=self.ditto_epochs,
            batch_size=int(self.local["batch_size"]),
            generator=self._generator,
        )
        personal = clean_metrics(self._site.evaluate(self._personal))
        metrics = dict(out.get_meta_prop(C.META_SITE_METRICS) or {})
        metrics.update({f"personal_{k}": personal[k] for k in (C.M_ACCURACY, C.M_AUC, C.M_LOSS)})
        metrics["personal_train_loss"] = stats["personal_train_loss"]
        out.set_meta_prop(C.META_SITE_METRICS, metrics)
        if self._run_dir is not None:
            np.savez(self._run_dir / C.PERSONAL_MODEL_FILE, **to_numpy(self._personal))
        self.log_info(
            fl_ctx,
            f"personal model (lambda={self.ditto_lambda}): accuracy={personal[C.M_ACCURACY]:.4f} "
            f"loss={personal[C.M_LOSS]:.4f}; global received: accuracy={metrics.get('global_accuracy')}",
        )
        return out.update_shareable(result)
