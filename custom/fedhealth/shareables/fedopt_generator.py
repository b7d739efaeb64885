"""Shareable generator that applies a server optimizer (FedAdam, FedYogi, FedAdagrad; Reddi et al.
2021, "Adaptive Federated Optimization") to the aggregated update, and sends the learning-rate
schedule like :class:`ScheduledShareableGenerator`.

FLARE 2.9's ``PTFedOptModelShareableGenerator`` does the same with a torch optimizer built from
config, which has no Yogi; this one calls the kit's FLARE-free
:class:`fedhealth.algorithms.fedopt.ServerOptimizer` and works with any aggregator that returns
averaged ``WEIGHTS`` or a ``WEIGHT_DIFF`` (fedhealth's ``RobustAggregator`` included).
"""

from __future__ import annotations

import numpy as np
from nvflare.apis.dxo import DataKind, from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.model import ModelLearnable, ModelLearnableKey
from nvflare.app_common.app_constant import AppConstants

from fedhealth.algorithms.fedopt import ServerOptimizer, averaged_delta
from fedhealth.shareables.scheduled_generator import ScheduledShareableGenerator


class FedOptShareableGenerator(ScheduledShareableGenerator):
    """``x = x + server step(avg(y_i) - x)`` on the server; ``lr * gamma ** round`` to the sites.

    Args:
        lr: the sites' learning rate of round 0.
        gamma: per-round decay of the sites' learning rate.
        server_opt: ``"adam"``, ``"yogi"``, ``"adagrad"`` or ``"sgd"``.
        server_lr: the server learning rate ``eta``.
        beta1: first-moment decay.
        beta2: second-moment decay.
        tau: adaptivity (denominator floor).
    """

    def __init__(
        self,
        *,
        lr: float,
        gamma: float = 1.0,
        server_opt: str = "yogi",
        server_lr: float = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
    ) -> None:
        super().__init__(lr=lr, gamma=gamma)
        self.settings = {"kind": server_opt, "lr": server_lr, "beta1": beta1, "beta2": beta2, "tau": tau}
        self.optimizer = ServerOptimizer(**self.settings)  # checks the settings now, not in a round

    def shareable_to_learnable(self, shareable: Shareable, fl_ctx: FLContext) -> ModelLearnable:
        base_model = fl_ctx.get_prop(AppConstants.GLOBAL_MODEL)
        if not base_model:
            self.system_panic(
                reason="FedOpt needs the current global model to apply its step.", fl_ctx=fl_ctx
            )
            return base_model
        dxo = from_shareable(shareable)
        current = base_model[ModelLearnableKey.WEIGHTS]
        base = {k: np.asarray(v, dtype="float64") for k, v in current.items()}
        if dxo.data_kind == DataKind.WEIGHTS:
            delta = averaged_delta(base, dxo.data)
        elif dxo.data_kind == DataKind.WEIGHT_DIFF:
            delta = {k: np.asarray(v, dtype="float64") for k, v in dxo.data.items()}
        else:
            raise ValueError(f"FedOpt expects aggregated WEIGHTS or WEIGHT_DIFF, got {dxo.data_kind}.")
        new = self.optimizer.step(base, delta)
        base_model[ModelLearnableKey.WEIGHTS] = {
            k: new[k].astype(np.asarray(current[k]).dtype).reshape(np.shape(current[k])) for k in current
        }
        base_model[ModelLearnableKey.META] = dxo.get_meta_props()
        norm = float(np.sqrt(sum(float((d**2).sum()) for d in delta.values())))
        self.log_info(fl_ctx, f"{self.settings['kind']} server step on an averaged update of norm {norm:.4g}")
        return base_model
