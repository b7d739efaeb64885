"""A validating aggregator for FLARE's ``ScatterAndGatherScaffold`` (SCAFFOLD, Karimireddy et al. 2020).

Under SCAFFOLD ("SCAFFOLD: Stochastic Controlled Averaging for Federated Learning", ICML 2020) each
site returns a DXO collection: its trained weights (``_model_weights_``, WEIGHTS) and the change of its
control variate (``scaffold_c_diff``, WEIGHT_DIFF). FLARE's stock ``InTimeAccumulateWeightedAggregator``
averages both parts unchecked; this one first checks both parts as :class:`RobustAggregator` checks a
model (the global model's parameter names and shapes, finite values only), drops a site whose weight
update's norm is far above the median, and then averages each part as FLARE does: the sample-weighted
mean, each part weighted by its own ``NUM_STEPS_CURRENT_ROUND``. The workflow adds the control part to
the server's control variate, so a NaN there would poison every site's gradient correction for good.

With ``total_sites`` set (the federation's N), a round with |S| < N accepted sites moves the server's
variate by |S|/N of their mean change, as Algorithm 1 of the paper does with partial participation
(``c <- c + (1/N) sum_S dc_i``); FLARE's workflow adds the mean whole, which overshoots by N/|S| when
a site is slow, missing or rejected.

The control-variate differences are not norm-checked: they shrink towards zero as a site's control
variate settles, at different rates per site, so a ratio to the median would reject honest sites late
in training.
"""

from __future__ import annotations

import numpy as np
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.fl_constant import ReservedKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AlgorithmConstants, AppConstants

from fedhealth.aggregators.robust_aggregator import RobustAggregator
from fedhealth.training.robust import norm_outliers, update_norm, validate_update, weighted_mean

Arrays = dict[str, np.ndarray]
# collection key -> the data kind it must hold
PARTS = {
    AppConstants.MODEL_WEIGHTS: DataKind.WEIGHTS,
    AlgorithmConstants.SCAFFOLD_CTRL_DIFF: DataKind.WEIGHT_DIFF,
}


class ScaffoldAggregator(RobustAggregator):
    """Checks and averages SCAFFOLD's (weights, control difference) collections; see the module.

    Rejections are logged, kept in :attr:`rejections` and announced like :class:`RobustAggregator`'s.

    Args:
        max_norm_ratio: reject a site whose weight update's norm is above this multiple of the median
            (needs 3 or more sites); ``None`` turns the check off.
        total_sites: N, the sites of the federation: a round aggregated from fewer moves the control
            variate by their share (partial participation); ``None``: the whole mean, as FLARE does.
    """

    def __init__(self, *, max_norm_ratio: float | None = 10.0, total_sites: int | None = None) -> None:
        super().__init__(rule="mean", max_norm_ratio=max_norm_ratio, expected_data_kind=DataKind.WEIGHTS)
        if total_sites is not None and (isinstance(total_sites, bool) or int(total_sites) < 1):
            raise ValueError(f"total_sites must be a whole number >= 1 or None, got {total_sites!r}.")
        self.total_sites = None if total_sites is None else int(total_sites)
        # site -> collection key -> (arrays, sample weight)
        self._parts: dict[str, dict[str, tuple[Arrays, float]]] = {}

    def reset(self, fl_ctx: FLContext) -> None:
        with self._lock:
            self._parts, self._round = {}, None

    def accept(self, shareable: Shareable, fl_ctx: FLContext) -> bool:
        site = shareable.get_peer_prop(key=ReservedKey.IDENTITY_NAME, default="?")
        current_round = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        try:
            reason, parts = self._check_collection(shareable, site, current_round, fl_ctx)
        except Exception as e:  # a malformed contribution is a rejection, never a crash of the server
            reason, parts = f"It could not be checked ({type(e).__name__}: {e}).", {}
        if reason is None:
            with self._lock:
                if self._round != current_round:
                    self._parts, self._round = {}, current_round
                if site in self._parts:
                    reason = f"It is a second contribution for round {current_round}; the first was kept."
                else:
                    self._parts[site] = parts
        if reason is not None:
            self._reject(site, current_round, reason, fl_ctx)
            return False
        return True

    def _check_collection(
        self, shareable: Shareable, site: str, current_round: int | None, fl_ctx: FLContext
    ) -> tuple[str | None, dict[str, tuple[Arrays, float]]]:
        """Why a contribution is rejected (``None`` if it is not) and its two parts with their weights."""
        rc = shareable.get_return_code()
        if rc and rc != ReturnCode.OK:
            return f"The site returned {rc} instead of a result.", {}
        contribution_round = shareable.get_cookie(AppConstants.CONTRIBUTION_ROUND)
        if contribution_round != current_round:
            return f"It was trained for round {contribution_round}, not the current {current_round}.", {}
        collection = from_shareable(shareable)
        if collection.data_kind != DataKind.COLLECTION or not isinstance(collection.data, dict):
            return f"It holds {collection.data_kind}, not SCAFFOLD's collection of {list(PARTS)}.", {}
        reference = self._global_weights(fl_ctx)
        if reference is None:
            return "The server has no global model to check it against.", {}
        parts = {}
        for key, kind in PARTS.items():
            part = collection.data.get(key)
            if not isinstance(part, DXO) or part.data_kind != kind or not isinstance(part.data, dict):
                return f"Its collection lacks {key} as a {kind} DXO.", {}
            reason = validate_update(part.data, reference=reference)
            if reason is not None:
                return f"{key}: {reason}", {}
            steps = part.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, 1)
            try:
                weight = float(steps)
            except (TypeError, ValueError):
                weight = float("nan")
            if not (np.isfinite(weight) and weight > 0):
                return f"{key}: its NUM_STEPS_CURRENT_ROUND weight {steps!r} is not a positive number.", {}
            parts[key] = ({k: np.asarray(v) for k, v in part.data.items()}, weight)
        return None, parts

    def aggregate(self, fl_ctx: FLContext) -> Shareable:
        current_round = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        with self._lock:
            received, self._parts = self._parts, {}
        reference = self._global_weights(fl_ctx)
        w_key, c_key = AppConstants.MODEL_WEIGHTS, AlgorithmConstants.SCAFFOLD_CTRL_DIFF
        if reference is None:
            self.log_error(fl_ctx, f"Round {current_round}: no global model; returning no change.")
            empty = {key: DXO(kind, data={}) for key, kind in PARTS.items()}
            return DXO(data_kind=DataKind.COLLECTION, data=empty).to_shareable()
        updates = {s: self._update(p[w_key][0], reference) for s, p in received.items()}
        if self.max_norm_ratio is not None:
            norms = {s: update_norm(u) for s, u in updates.items()}
            for site, reason in norm_outliers(norms, max_ratio=self.max_norm_ratio).items():
                self._reject(site, current_round, reason, fl_ctx)
                del updates[site]
        sites = sorted(updates)
        zeros = {k: np.zeros(np.shape(v)) for k, v in reference.items()}
        if sites:
            weights_part = weighted_mean([updates[s] for s in sites], [received[s][w_key][1] for s in sites])
            control = weighted_mean(
                [received[s][c_key][0] for s in sites], [received[s][c_key][1] for s in sites]
            )
            share = self._share(len(sites), current_round, fl_ctx)
            control = {k: v * share for k, v in control.items()}
            self.log_info(fl_ctx, f"Round {current_round}: SCAFFOLD mean of {', '.join(sites)}.")
        else:
            weights_part, control = zeros, zeros
            self.log_error(
                fl_ctx, f"Round {current_round}: no update accepted; the global model stays unchanged."
            )
        dtypes = {k: np.asarray(v).dtype for k, v in reference.items()}
        parts = {
            w_key: from_shareable(self._result(weights_part, reference)),
            c_key: DXO(DataKind.WEIGHT_DIFF, data={k: v.astype(dtypes[k]) for k, v in control.items()}),
        }
        return DXO(data_kind=DataKind.COLLECTION, data=parts).to_shareable()

    def _share(self, n_sites: int, current_round: int | None, fl_ctx: FLContext) -> float:
        """|S|/N, the part of the sites' mean control change the server's variate takes (1 without N)."""
        if self.total_sites is None:
            return 1.0
        if n_sites > self.total_sites:
            self.log_warning(
                fl_ctx,
                f"Round {current_round}: {n_sites} sites contributed but total_sites is {self.total_sites}; "
                "the control variate takes their whole mean change (raise total_sites).",
            )
            return 1.0
        if n_sites < self.total_sites:
            self.log_info(
                fl_ctx,
                f"Round {current_round}: {n_sites} of {self.total_sites} sites; the control variate moves "
                f"by {n_sites}/{self.total_sites} of their mean change.",
            )
        return n_sites / self.total_sites
