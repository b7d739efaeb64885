"""FLARE's HE shareable generator, plus the round's learning rate and the model's tensor shapes.

Like :class:`~fedhealth.shareables.scheduled_generator.ScheduledShareableGenerator`, it adds
``lr * gamma ** round`` to every outgoing model's DXO meta, so the schedule stays in the server's
job config. With HE the global model after round 0 is a set of CKKS vectors the server cannot read,
and FLARE's encryptor flattens every tensor, so the generator also sends each tensor's shape
(learned from the clear initial model) for the sites to restore
(:class:`~fedhealth.filters.he_shape_restorer.HEShapeRestorer`), and keeps them in the saved
global model's meta, which the evaluation workflow sends.
"""

from __future__ import annotations

import numpy as np
from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.model import ModelLearnable, ModelLearnableKey
from nvflare.app_opt.he.model_shareable_generator import HEModelShareableGenerator

from fedhealth.constants import HE_SERVER_CONTEXT_FILE, META_MODEL_SHAPES
from fedhealth.shareables.scheduled_generator import check_schedule, stamp_schedule


class HEScheduledShareableGenerator(HEModelShareableGenerator):
    """Adds ``fedhealth_learning_rate``, ``fedhealth_round`` and ``fedhealth_model_shapes`` to the meta.

    Args:
        lr: learning rate of round 0.
        gamma: multiplicative decay per round (1.0 keeps it constant).
        tenseal_context_file: the server's public context in its startup kit.
    """

    def __init__(
        self, *, lr: float, gamma: float = 1.0, tenseal_context_file: str = HE_SERVER_CONTEXT_FILE
    ) -> None:
        super().__init__(tenseal_context_file=tenseal_context_file)
        check_schedule(lr, gamma)
        self.lr = lr
        self.gamma = gamma
        self._shapes: dict[str, list[int]] | None = None

    def _remember_shapes(self, model: ModelLearnable) -> None:
        weights = model.get(ModelLearnableKey.WEIGHTS) or {}
        meta = model.get(ModelLearnableKey.META) or {}
        if self._shapes is None and isinstance(meta.get(META_MODEL_SHAPES), dict):
            self._shapes = {k: list(v) for k, v in meta[META_MODEL_SHAPES].items()}
        if self._shapes is None and weights and all(isinstance(v, np.ndarray) for v in weights.values()):
            self._shapes = {k: list(v.shape) for k, v in weights.items()}

    def learnable_to_shareable(self, model_learnable: ModelLearnable, fl_ctx: FLContext) -> Shareable:
        self._remember_shapes(model_learnable)
        shareable = super().learnable_to_shareable(model_learnable, fl_ctx)
        dxo = from_shareable(shareable)
        stamp_schedule(dxo, self.lr, self.gamma, fl_ctx)
        if self._shapes is not None:
            dxo.set_meta_prop(META_MODEL_SHAPES, self._shapes)
        return dxo.update_shareable(shareable)

    def shareable_to_learnable(self, shareable: Shareable, fl_ctx: FLContext) -> ModelLearnable:
        model = super().shareable_to_learnable(shareable, fl_ctx)
        if self._shapes is not None and isinstance(model, dict):
            meta = dict(model.get(ModelLearnableKey.META) or {})
            meta[META_MODEL_SHAPES] = self._shapes
            model[ModelLearnableKey.META] = meta
        return model
