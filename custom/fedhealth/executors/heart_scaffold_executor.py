"""Site executor for SCAFFOLD (Karimireddy et al. 2020) under FLARE's ``ScatterAndGatherScaffold``.

FLARE 2.9 ships the server side: ``nvflare.app_common.workflows.scatter_and_gather_scaffold``
sends a DXO collection of the global weights and the server control variate ``c``
(``scaffold_c_global``) and adds the aggregated ``scaffold_c_diff`` to ``c``. Its client helper
(``PTScaffoldHelper``) lives inside FLARE's own learner; this executor is the kit's equivalent on
:class:`HeartExecutor`: it keeps the site variate ``c_i`` in memory for the run, corrects each
local gradient by ``c - c_i`` and answers with the new weights and ``c_i+ - c_i`` (option II), all
through :mod:`fedhealth.algorithms.scaffold`. Only weights and control variates leave the site.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import numpy as np
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AlgorithmConstants, AppConstants

from fedhealth import constants as C
from fedhealth.algorithms import scaffold
from fedhealth.executors.heart_executor import HeartExecutor
from fedhealth.training.schedule import lr_for_round


class HeartScaffoldExecutor(HeartExecutor):
    """:class:`HeartExecutor` with SCAFFOLD's control variates.

    ``ScatterAndGatherScaffold`` does not call the shareable generator for outgoing models, so the
    learning-rate schedule ``lr * gamma ** round`` is this executor's setting here.

    Args:
        lr: local learning rate of round 0.
        gamma: per-round decay.
        **kwargs: the :class:`HeartExecutor` settings.
    """

    def __init__(self, *, lr: float, gamma: float = 1.0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if lr <= 0 or not 0 < gamma <= 1:
            raise ValueError(f"SCAFFOLD needs lr > 0 and gamma in (0, 1]; got lr={lr}, gamma={gamma}.")
        self.lr = lr
        self.gamma = gamma
        self._c_local: dict[str, np.ndarray] | None = None
        self._c_global: dict[str, np.ndarray] | None = None

    def round_learning_rate(self, shareable: Shareable) -> float:
        """This executor's own schedule (the SCAFFOLD workflow sends no learning rate)."""
        return lr_for_round(self.lr, self.gamma, shareable.get_header(AppConstants.CURRENT_ROUND, 0) or 0)

    def _train(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        collection = from_shareable(shareable)
        parts = collection.data if collection.data_kind == DataKind.COLLECTION else {}
        if AppConstants.MODEL_WEIGHTS not in parts or AlgorithmConstants.SCAFFOLD_CTRL_GLOBAL not in parts:
            raise ValueError(
                "the SCAFFOLD train task must carry the global weights and the server control variate; "
                "run it under FLARE's ScatterAndGatherScaffold workflow"
            )
        current_round = shareable.get_header(AppConstants.CURRENT_ROUND, 0) or 0
        lr = lr_for_round(self.lr, self.gamma, current_round)
        weights = parts[AppConstants.MODEL_WEIGHTS]
        weights.set_meta_prop(C.META_LEARNING_RATE, lr)
        start = {k: np.asarray(v, dtype="float64") for k, v in weights.data.items()}
        self._c_global = {
            k: np.asarray(v, dtype="float64")
            for k, v in parts[AlgorithmConstants.SCAFFOLD_CTRL_GLOBAL].data.items()
        }
        if self._c_local is None:
            self._c_local = scaffold.zeros_like(start)
        inner = weights.to_shareable()
        inner.set_header(AppConstants.CURRENT_ROUND, current_round)
        result = from_shareable(super()._train(inner, fl_ctx))
        steps = int(result.get_meta_prop(C.META_LOCAL_STEPS))
        self._c_local, c_diff = scaffold.update_local_control(
            self._c_local, self._c_global, start, result.data, steps=steps, lr=lr
        )
        ctrl = DXO(data_kind=DataKind.WEIGHT_DIFF, data={k: v.astype("float32") for k, v in c_diff.items()})
        ctrl.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, self._site.n_train)
        out = DXO(
            data_kind=DataKind.COLLECTION,
            data={AppConstants.MODEL_WEIGHTS: result, AlgorithmConstants.SCAFFOLD_CTRL_DIFF: ctrl},
        )
        out.set_meta_prop(C.META_SITE_METRICS, result.get_meta_prop(C.META_SITE_METRICS))
        return out.to_shareable()

    def _train_context(self, model) -> AbstractContextManager:
        return scaffold.corrected_gradients(model, scaffold.correction(self._c_global, self._c_local))
