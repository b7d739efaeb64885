"""Site privacy filter: named layers of the local model never leave the site.

For a site's ``privacy.json`` scope (or a job's filters). List the same filter under the scope's
``task_data_filters`` and ``task_result_filters``: on the data chain it remembers the global
values of the named layers the server sent; on the result chain it puts those values back into
the outgoing weights (a zero update for those layers), or zeroes them in weight differences.
The math is :func:`fedhealth.policy.update_rules.exclude_layers`.
"""

from __future__ import annotations

import numpy as np
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.dxo_filter import DXOFilter
from nvflare.apis.filter import FilterChainType, FilterContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

from fedhealth.constants import META_PRIVACY
from fedhealth.filters.model_update import model_dxo
from fedhealth.policy.update_rules import exclude_layers

# job id -> the last global values of the excluded layers this site received. The data-chain and
# the result-chain instances of the filter are separate objects in the same job process.
_RECEIVED: dict[str, dict[str, np.ndarray]] = {}


class ExcludeLayers(DXOFilter):
    """Keeps ``layers`` of the local model at the site.

    Args:
        layers: parameter names (as in the model's state dict), e.g. ``["net.bias"]``.
    """

    def __init__(self, layers: list[str]) -> None:
        super().__init__(
            supported_data_kinds=[DataKind.WEIGHTS, DataKind.WEIGHT_DIFF],
            data_kinds_to_filter=[DataKind.WEIGHTS, DataKind.WEIGHT_DIFF],
        )
        if not layers or not all(isinstance(name, str) and name for name in layers):
            raise ValueError(f"ExcludeLayers needs a non-empty list of layer names, got {layers!r}.")
        self.layers = list(layers)

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        dxo = model_dxo(shareable)
        if dxo is None:
            return shareable  # statistics, metrics: not a model update
        if self.get_prop(FilterContextKey.CHAIN_TYPE) == FilterChainType.TASK_DATA_CHAIN:
            if dxo.data_kind == DataKind.WEIGHTS:
                found = {k: np.array(dxo.data[k], copy=True) for k in self.layers if k in dxo.data}
                # Under HE the scope sees the data before the job's decryptor: ciphertexts, not
                # numbers. Remember nothing, so the result side refuses instead of sending them back.
                found = {k: v for k, v in found.items() if v.dtype.kind == "f"}
                if found:
                    _RECEIVED[fl_ctx.get_job_id()] = found
            return shareable
        return super().process(shareable, fl_ctx)

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO | None:
        if dxo.data_kind == DataKind.WEIGHT_DIFF:
            dxo.data = exclude_layers(dxo.data, self.layers)
        else:
            received = _RECEIVED.get(fl_ctx.get_job_id())
            if received is None:
                # FLARE then sends an error reply for this task instead of the local weights.
                raise ValueError(
                    "ExcludeLayers: no global model was received in this job, so the excluded layers "
                    "cannot be replaced; refusing to send local weights. List the filter under the "
                    "scope's task_data_filters too."
                )
            dxo.data = exclude_layers(dxo.data, self.layers, received=received)
        stamps = list(dxo.get_meta_prop(META_PRIVACY) or [])
        stamps.append({"filter": "ExcludeLayers", "layers": self.layers})
        dxo.set_meta_prop(META_PRIVACY, stamps)
        self.log_info(fl_ctx, f"privacy scope: kept {len(self.layers)} layer(s) at the site")
        return dxo
