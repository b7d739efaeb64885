"""The ``train`` task's SecAgg+ filter: the site's update leaves only clipped, encoded and masked.

List it on the site's ``train`` task data chain and result chain (as the job does):

- data chain: it checks the round's mask keys (each signed by its site's certified identity) and
  opens the shares of the round's mask keys and self-mask seeds that the server relayed in the
  ``fedhealth_secagg`` header (each sealed for its receiver; a forged or replayed key or share
  fails the task), and remembers the global weights the task carries;
- result chain: the update (local weights minus those global weights, or the ``WEIGHT_DIFF``) is
  checked for NaN and clipped to ``max_norm`` (:func:`fedhealth.privacy.update_guard.guard_update`),
  multiplied by the site's FedAvg weight ratio, encoded into the ring and masked
  (:meth:`fedhealth.secagg.site.SecAggSite.mask`). The DXO that leaves holds only the masked vector
  (kind ``fedhealth.SECAGG_MASKED``); the meta keeps the round's released metrics and the FedAvg
  weight, as every job sends. The update's norm is logged at the site, never sent.

DP-SGD composes (the noise is in the update before masking); the fixed-point encoding is the
quantizer. Refused, with the reason: a compressed update (``UpdateCompressor`` before this filter:
masks are dense and uniform, so a sparse or quantized payload cannot be masked and stay small), and
a ``COLLECTION`` (SCAFFOLD's control variates: this filter masks one model update).
"""

from __future__ import annotations

import numpy as np
from nvflare.apis.dxo import DXO, DataKind, MetaKey
from nvflare.apis.filter import Filter, FilterChainType, FilterContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

from fedhealth import constants as C
from fedhealth.executors.secagg_executor import site_for
from fedhealth.filters.model_update import local_update, model_dxo, nested_model, result_dxo
from fedhealth.privacy.update_guard import guard_update
from fedhealth.secagg.encoding import flatten

_RECEIVED: dict[str, tuple[dict[str, np.ndarray], int]] = {}  # job id -> (global weights, round)


class SecAggMask(Filter):
    """Opens the relayed shares (data chain); clips, encodes and masks the update (result chain)."""

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        if self.get_prop(FilterContextKey.CHAIN_TYPE) == FilterChainType.TASK_DATA_CHAIN:
            return self._on_task(shareable, fl_ctx)
        return self._on_result(shareable, fl_ctx)

    def _on_task(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        payload = shareable.get_header(C.HEADER_SECAGG, None)
        if payload is None:
            raise ValueError(
                "the train task carries no SecAgg+ shares; this job's server must run SecAggController"
            )
        site = site_for(fl_ctx.get_job_id())
        me = fl_ctx.get_identity_name()
        site.receive(
            epoch=payload["epoch"],
            rnd=payload["rnd"],
            contributors=payload["contributors"],
            keys=payload["keys"],
            shares=payload["shares"].get(me, {}),
        )
        dxo = model_dxo(shareable)
        if dxo is None or dxo.data_kind != DataKind.WEIGHTS:
            raise ValueError("the train task carries no global model weights")
        weights = {k: np.asarray(v, np.float64) for k, v in dxo.data.items()}
        _RECEIVED[fl_ctx.get_job_id()] = (weights, int(payload["rnd"]))
        return shareable

    def _on_result(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        if result_dxo(shareable) is None:
            return shareable  # a failed task: its error reply goes as it is
        if nested_model(shareable):
            raise ValueError("SecAggMask masks one model update; a COLLECTION (e.g. SCAFFOLD's) is refused")
        if result_dxo(shareable).data_kind == C.COMPRESSED_KIND:
            raise ValueError(
                "SecAggMask masks a dense update; a compressed one (UpdateCompressor) cannot be masked and "
                "stay small, so it is refused: drop the compressor (the fixed-point ring is SecAgg+'s "
                "quantizer)"
            )
        dxo = model_dxo(shareable)
        if dxo is None:
            raise ValueError("the train result holds no model update to mask; nothing is sent in the clear")
        job = fl_ctx.get_job_id()
        if job not in _RECEIVED:
            raise ValueError("no global model was received in this job; refusing to send local weights")
        received, rnd = _RECEIVED[job]
        local = {k: np.asarray(v, np.float64) for k, v in dxo.data.items()}
        if dxo.data_kind == DataKind.WEIGHTS:
            missing = sorted(set(received) - set(local))
            if missing:
                raise ValueError(f"SecAggMask: the local model lacks layers {missing} of the global model")
            update = local_update(local, received, who="SecAggMask")
        else:
            update = local
        site = site_for(job)
        where = f"round {rnd} update"
        guarded = guard_update(update, max_norm=site.config.max_norm, where=where)
        weight = float(dxo.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, 1.0))
        encoded = site.config.fixed_point.encode(flatten(guarded.update, sorted(received)), weight=weight)
        masked = site.config.fixed_point.to_wire(site.mask(encoded, rnd=rnd))
        self.log_info(
            fl_ctx,
            f"round {rnd}: update norm {guarded.norm:.4g}"
            + (f", clipped to {site.config.max_norm:g}" if guarded.clipped else "")
            + f"; sent masked ({encoded.size} values of {site.config.bits} bits)",
        )
        meta = {**dxo.meta, C.META_ROUND: rnd}
        out = DXO(data_kind=C.SECAGG_MASKED_KIND, data={C.SECAGG_MASKED_KEY: masked}, meta=meta)
        return out.update_shareable(shareable)  # the reply's headers (task id, round) stay
