"""Site filter: the checks a site runs on its own update before the update is encrypted.

Under HE (FLARE's ``HEModelEncryptor``, CKKS) the server only ever holds ciphertexts: it cannot
refuse a NaN or an absurd norm the way it can in the clear. So the site checks first, with
:func:`fedhealth.privacy.update_guard.guard_update`: every value must be finite, and the update's
L2 norm over all layers together is clipped to ``max_norm`` (scaled down, direction kept).

List the same filter twice in the job's client config, for the ``train`` task:

- in ``task_data_filters`` AFTER ``HEModelDecryptor`` and ``HEShapeRestorer``: it remembers the
  plaintext global weights the site received (by job id; the two instances are separate objects in
  the same job process);
- in ``task_result_filters`` BEFORE ``HEModelEncryptor``: it forms the update (local weights minus
  the remembered global weights for ``WEIGHTS``; the ``WEIGHT_DIFF`` itself), guards it and sends the
  global weights plus the clipped update (``WEIGHTS``; the local weights unchanged when nothing was
  clipped) or the clipped difference.

Refusals raise, and FLARE's client runner then answers the task with ``TASK_RESULT_FILTER_ERROR``
instead of the update (``nvflare/private/fed/client/client_runner.py``, NVFlare 2.9: the
``except Exception`` around ``apply_filters`` of the task result filters). They are: a NaN or
infinity in the update (the message names the layers, never a value); local ``WEIGHTS`` with no
remembered global model (the filter is missing from the data chain, or sits before the decryptor
and saw ciphertexts); a model inside a ``COLLECTION`` (SCAFFOLD), which this filter cannot check.

The DXO's ``fedhealth_privacy`` meta gets ``{"filter": "UpdateGuard", "max_norm", "clipped"}``.
DXO meta travels in clear next to the ciphertexts, so the update's norm is logged at the site and
never stamped: the server learns only whether it was clipped.
"""

from __future__ import annotations

import numpy as np
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.dxo_filter import DXOFilter
from nvflare.apis.filter import FilterChainType, FilterContextKey
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AppConstants

from fedhealth.constants import META_PRIVACY, TASK_TRAIN
from fedhealth.filters.model_update import MODEL_KINDS, local_update, model_dxo, nested_model
from fedhealth.privacy.update_guard import check_max_norm, guard_update

# job id -> the plaintext global weights of the last train task. The data-chain and result-chain
# instances of the filter are separate objects in the same job process.
_RECEIVED: dict[str, dict[str, np.ndarray]] = {}
FILTER_NAME = "UpdateGuard"
HINT = " List the filter after HEShapeRestorer in task_data_filters."  # a shape mismatch: HE flattened it


class UpdateGuard(DXOFilter):
    """Refuses a non-finite update and clips its L2 norm to ``max_norm`` before it is encrypted.

    Args:
        max_norm: the largest L2 norm of the site's update over all layers together; set it a few
            times above a normal round's norm (the job README gives the measured norms).
    """

    def __init__(self, max_norm: float) -> None:
        super().__init__(supported_data_kinds=list(MODEL_KINDS), data_kinds_to_filter=list(MODEL_KINDS))
        self.max_norm = check_max_norm(max_norm, where="UpdateGuard")

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        task = fl_ctx.get_prop(FLContextKey.TASK_NAME)
        if task not in (None, TASK_TRAIN):
            return shareable  # validate, submit_model, statistics: not the round's update
        dxo = model_dxo(shareable)
        if self.get_prop(FilterContextKey.CHAIN_TYPE) == FilterChainType.TASK_DATA_CHAIN:
            self._remember(dxo, fl_ctx)
            return shareable
        if dxo is None:
            if nested_model(shareable):
                raise ValueError(
                    "UpdateGuard: the result holds a model inside a COLLECTION (e.g. SCAFFOLD's weights and "
                    "control variates), which this filter cannot check; refusing to send it."
                )
            return shareable  # metrics, declined tasks: not a model update
        return super().process(shareable, fl_ctx)

    def _remember(self, dxo: DXO | None, fl_ctx: FLContext) -> None:
        job_id = fl_ctx.get_job_id()
        weights = {}
        if dxo is not None and dxo.data_kind == DataKind.WEIGHTS:
            weights = {k: np.array(v, copy=True) for k, v in dxo.data.items()}
        if weights and all(v.dtype.kind == "f" for v in weights.values()):
            _RECEIVED[job_id] = weights
        else:
            # Ciphertexts (the filter sits before the decryptor) or no model: forget the last round's
            # model, so the result side refuses instead of forming an update against a stale one.
            _RECEIVED.pop(job_id, None)

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO | None:
        received = _RECEIVED.get(fl_ctx.get_job_id())
        if dxo.data_kind == DataKind.WEIGHTS:
            if received is None:
                raise ValueError(
                    "UpdateGuard: no plaintext global model was received for this train task, so the update "
                    "cannot be checked; refusing to send local weights. List the filter in the job's "
                    "task_data_filters too, after HEModelDecryptor and HEShapeRestorer."
                )
            update = local_update(dxo.data, received, who=FILTER_NAME, hint=HINT)
        else:
            update = {k: np.asarray(v) for k, v in dxo.data.items()}
        round_index = shareable.get_header(AppConstants.CURRENT_ROUND)
        at = f" of round {round_index}" if round_index is not None else ""
        where = f"UpdateGuard: this site's train update{at}"
        guarded = guard_update(update, max_norm=self.max_norm, where=where)
        if guarded.clipped:
            if dxo.data_kind == DataKind.WEIGHTS:
                dxo.data = {
                    k: (np.asarray(received[k], np.float64) + v).astype(_dtype(dxo.data[k]))
                    for k, v in guarded.update.items()
                }
            else:
                dxo.data = {k: v.astype(_dtype(dxo.data[k])) for k, v in guarded.update.items()}
        stamps = list(dxo.get_meta_prop(META_PRIVACY) or [])
        stamps.append({"filter": FILTER_NAME, "max_norm": self.max_norm, "clipped": guarded.clipped})
        dxo.set_meta_prop(META_PRIVACY, stamps)
        self.log_info(
            fl_ctx,
            f"update guard: L2 norm {guarded.norm:.4g}, max_norm {self.max_norm:g}, "
            f"{'clipped' if guarded.clipped else 'not clipped'}",
        )
        return dxo


def _dtype(value: object) -> np.dtype:
    """The dtype to send a layer back in: the local layer's float type, float32 for anything else."""
    dtype = np.asarray(value).dtype
    return dtype if dtype.kind == "f" else np.dtype(np.float32)
