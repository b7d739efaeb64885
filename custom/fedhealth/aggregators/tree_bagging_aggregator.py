"""Tree-based bagging at the server: every site's new trees appended to the global XGBoost model.

Each accepted contribution is a site's new trees (XGBoost JSON, :func:`fedhealth.trees.model.tree_weights`);
:meth:`TreeBaggingAggregator.aggregate` appends them, sites in name order (the same model whatever
order they arrived in), to the global model of the round and returns the whole ensemble, which
FLARE's ``FullModelShareableGenerator`` takes as the new global model. A contribution that is not a
tree model, cannot be added to the global model (another base score, feature count, objective) or
comes twice in a round is rejected and named in the run record, never aggregated; so are trees grown
for an earlier round (a late result: they were boosted from another ensemble's margin).
"""

from __future__ import annotations

import threading

from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.fl_constant import ReservedKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.aggregator import Aggregator
from nvflare.app_common.abstract.model import ModelLearnableKey
from nvflare.app_common.app_constant import AppConstants

from fedhealth.constants import EVENT_UPDATE_REJECTED, PROP_REJECTION
from fedhealth.trees.bagging import append_trees
from fedhealth.trees.model import TreeModel, model_json, tree_weights


class TreeBaggingAggregator(Aggregator):
    """Appends the sites' new trees to the global model (no arguments)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._received: dict[str, bytes] = {}
        self._round: int | None = None

    def accept(self, shareable: Shareable, fl_ctx: FLContext) -> bool:
        site = shareable.get_peer_prop(key=ReservedKey.IDENTITY_NAME, default="?")
        current_round = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        reason, trees = self._check(shareable, current_round, fl_ctx)
        if reason is None:
            with self._lock:
                if self._round != current_round:
                    self._received, self._round = {}, current_round
                if site in self._received:
                    reason = f"It is a second contribution for round {current_round}; the first was kept."
                else:
                    self._received[site] = trees  # type: ignore[assignment]
        if reason is not None:
            record = {"site": site, "round": current_round, "reason": reason}
            self.log_error(fl_ctx, f"Rejected the trees of {site} in round {current_round}: {reason}")
            if fl_ctx.get_engine() is not None:
                self.fire_event_with_data(EVENT_UPDATE_REJECTED, fl_ctx, PROP_REJECTION, record)
            return False
        return True

    def _check(
        self, shareable: Shareable, current_round: int | None, fl_ctx: FLContext
    ) -> tuple[str | None, bytes | None]:
        rc = shareable.get_return_code(ReturnCode.OK)
        if rc != ReturnCode.OK:
            return f"The site returned {rc}.", None
        contribution_round = shareable.get_cookie(AppConstants.CONTRIBUTION_ROUND)
        if contribution_round != current_round:
            return f"It was grown for round {contribution_round}, not the current {current_round}.", None
        try:
            dxo = from_shareable(shareable)
            if dxo.data_kind != DataKind.WEIGHTS:
                return f"It is {dxo.data_kind}, not a site's trees (WEIGHTS).", None
            trees = model_json(dxo.data)
            TreeModel(trees)  # readable by XGBoost
            append_trees(self._global(fl_ctx), [trees])  # and addable to the global model
        except (ValueError, KeyError, TypeError) as exc:
            return f"Its trees cannot join the global model: {exc}", None
        return None, trees

    @staticmethod
    def _global(fl_ctx: FLContext) -> bytes:
        learnable = fl_ctx.get_prop(AppConstants.GLOBAL_MODEL)
        weights = learnable.get(ModelLearnableKey.WEIGHTS) if isinstance(learnable, dict) else None
        if not isinstance(weights, dict):
            raise ValueError("the server holds no global tree model (TreeModelPersistor)")
        return model_json(weights)

    def aggregate(self, fl_ctx: FLContext) -> Shareable:
        with self._lock:
            received, self._received = self._received, {}
        current_round = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        model = self._global(fl_ctx)
        if received:
            model = append_trees(model, [received[site] for site in sorted(received)])
        self.log_info(
            fl_ctx,
            f"round {current_round}: appended the trees of {sorted(received)}; "
            f"the ensemble has {TreeModel(model).n_trees} boosting rounds",
        )
        return DXO(data_kind=DataKind.WEIGHTS, data=tree_weights(model)).to_shareable()
