"""Full-model shareable generator that sends each round's learning rate with the task.

The schedule is the seed's ``lr * gamma ** round``; the site reads it from the DXO meta, so the
schedule lives in the server's job config and nowhere else. :func:`check_schedule` and
:func:`stamp_schedule` are shared with the HE variant
(:mod:`fedhealth.shareables.he_scheduled_generator`).
"""

from __future__ import annotations

from nvflare.apis.dxo import DXO, from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.learnable import Learnable
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.shareablegenerators.full_model_shareable_generator import FullModelShareableGenerator

from fedhealth.constants import META_LEARNING_RATE, META_ROUND
from fedhealth.training.schedule import lr_for_round


def check_schedule(lr: float, gamma: float) -> None:
    """Refuse a schedule that cannot train: ``lr`` must be positive and ``gamma`` in (0, 1]."""
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}.")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}.")


def stamp_schedule(dxo: DXO, lr: float, gamma: float, fl_ctx: FLContext) -> None:
    """Put this round's ``lr * gamma ** round`` and the round number into ``dxo``'s meta."""
    current_round = fl_ctx.get_prop(AppConstants.CURRENT_ROUND, 0) or 0
    dxo.set_meta_prop(META_LEARNING_RATE, lr_for_round(lr, gamma, current_round))
    dxo.set_meta_prop(META_ROUND, current_round)


class ScheduledShareableGenerator(FullModelShareableGenerator):
    """Adds ``fedhealth_learning_rate = lr * gamma ** round`` to every outgoing model.

    Args:
        lr: learning rate of round 0.
        gamma: multiplicative decay per round (1.0 keeps it constant).
    """

    def __init__(self, *, lr: float, gamma: float = 1.0) -> None:
        super().__init__()
        check_schedule(lr, gamma)
        self.lr = lr
        self.gamma = gamma

    def learnable_to_shareable(self, model_learnable: Learnable, fl_ctx: FLContext) -> Shareable:
        shareable = super().learnable_to_shareable(model_learnable, fl_ctx)
        dxo = from_shareable(shareable)
        stamp_schedule(dxo, self.lr, self.gamma, fl_ctx)
        return dxo.update_shareable(shareable)
