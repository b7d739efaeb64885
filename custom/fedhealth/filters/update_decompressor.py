"""Decode what :class:`~fedhealth.filters.update_compressor.UpdateCompressor` encoded.

At the server it is the first ``task_result_filters`` entry on ``train``: it restores the site's
WEIGHTS or WEIGHT_DIFF before the aggregator sees them, measures the message as it arrived, and
adds ``bytes_received`` to the site metrics the run report totals. At a site it is a
``task_data_filters`` entry that restores a quantized global model before training.
"""

from __future__ import annotations

from nvflare.apis.dxo import DXO, DataKind, from_shareable
from nvflare.apis.dxo_filter import DXOFilter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

from fedhealth import constants as C
from fedhealth.compression.codec import decode_update
from fedhealth.filters.wire import serialized_size


class UpdateDecompressor(DXOFilter):
    """Turn a ``fedhealth.COMPRESSED`` DXO back into dense float tensors of its original kind."""

    def __init__(self) -> None:
        super().__init__(supported_data_kinds=[C.COMPRESSED_KIND], data_kinds_to_filter=[C.COMPRESSED_KIND])

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        received = serialized_size(shareable)  # per call: the server filters sites' results concurrently
        out = super().process(shareable, fl_ctx)
        dxo = from_shareable(out)
        info = dxo.get_meta_prop(C.META_COMPRESSION, None)
        if dxo.data_kind == C.COMPRESSED_KIND or not isinstance(info, dict):
            return out
        dxo.set_meta_prop(C.META_COMPRESSION, {**info, C.M_BYTES_RECEIVED: received})
        metrics = dxo.get_meta_prop(C.META_SITE_METRICS, None)
        if isinstance(metrics, dict):
            dxo.set_meta_prop(C.META_SITE_METRICS, {**metrics, C.M_BYTES_RECEIVED: received})
        return dxo.update_shareable(out)

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO:
        info = dxo.get_meta_prop(C.META_COMPRESSION, None) or {}
        kind = info.get("kind")
        if kind not in (DataKind.WEIGHTS, DataKind.WEIGHT_DIFF):
            raise ValueError(
                f"a compressed DXO must hold WEIGHTS or WEIGHT_DIFF, but its meta says {kind!r}."
            )
        return DXO(data_kind=DataKind(kind), data=decode_update(dxo.data), meta=dict(dxo.meta))
