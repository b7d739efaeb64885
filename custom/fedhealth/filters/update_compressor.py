"""Compress a model or update before it leaves: quantization or top-k with error feedback.

At a site, as the job's last ``task_result_filters`` entry on ``train``, it compresses the update
(top-k needs the executor to send ``WEIGHT_DIFF``). At the server, as a ``task_data_filters`` entry,
it quantizes the global model sent to the sites. The receiving side runs
:class:`~fedhealth.filters.update_decompressor.UpdateDecompressor`. The FLARE-free work is in
:mod:`fedhealth.compression`.

A top-k schedule (``warmup_rounds`` dense rounds, a ``k_start`` decaying to ``k_fraction`` over
``decay_rounds``) reads the round from the reply's ``CURRENT_ROUND`` header (the site executor sets
it). Behind the site's ``topk`` algorithm the filter only encodes, so it must carry the algorithm's
schedule: a round whose share differs from the algorithm's ``topk_k_fraction`` metric is refused
(encoding it would drop entries the algorithm's residual counts as sent).

Byte accounting: the filter serializes the message as FLARE does (FOBS) before and after
compression and records both sizes in the DXO meta (``fedhealth_compression``) and, for a site's
update, in the site metrics that the run report totals.
"""

from __future__ import annotations

import json
from pathlib import Path

from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.dxo_filter import DXOFilter
from nvflare.apis.fl_constant import JobConstants
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AppConstants

from fedhealth import constants as C
from fedhealth.compression.codec import encode_update
from fedhealth.compression.compose import CompositionError, check_client_filters
from fedhealth.compression.config import CompressionConfig
from fedhealth.compression.feedback import ErrorFeedback
from fedhealth.filters.wire import serialized_size


class UpdateCompressor(DXOFilter):
    """Encode WEIGHTS or WEIGHT_DIFF DXOs into a compact payload (kind ``fedhealth.COMPRESSED``).

    Args:
        mode: ``none``, ``fp16``, ``int8``, ``int4`` or ``topk`` (the job's one switch).
        k_fraction: share of each tensor's entries that top-k sends.
        error_feedback: keep what was not sent and add it to the next update (WEIGHT_DIFF only);
            the residual is kept in the site's run folder and survives a restart.
        block_size: values per quantization block.
        value_dtype: ``float16`` or ``float32`` for top-k values.
        warmup_rounds: top-k only: the job's first rounds go dense (float32).
        k_start: top-k only: the share of the first sparse round, decaying to ``k_fraction``.
        decay_rounds: top-k only: rounds over which ``k_start`` decays to ``k_fraction``.
    """

    def __init__(
        self,
        *,
        mode: str = "none",
        k_fraction: float = 0.01,
        error_feedback: bool = True,
        block_size: int = 512,
        value_dtype: str = "float16",
        warmup_rounds: int = 0,
        k_start: float | None = None,
        decay_rounds: int = 0,
    ) -> None:
        super().__init__(
            supported_data_kinds=[DataKind.WEIGHTS, DataKind.WEIGHT_DIFF],
            data_kinds_to_filter=[DataKind.WEIGHTS, DataKind.WEIGHT_DIFF],
        )
        self.config = CompressionConfig(
            mode=mode,
            k_fraction=k_fraction,
            error_feedback=error_feedback,
            block_size=block_size,
            value_dtype=value_dtype,
            warmup_rounds=warmup_rounds,
            k_start=k_start,
            decay_rounds=decay_rounds,
        )
        self._feedback: ErrorFeedback | None = None
        self._checked_job: str | None = None

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        raw = serialized_size(shareable)
        out = super().process(shareable, fl_ctx)
        dxo = from_shareable(out)
        if dxo.data_kind != C.COMPRESSED_KIND:
            return out
        return _stamp_sizes(dxo, out, raw)

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO:
        self._check_job(fl_ctx)
        if dxo.get_meta_prop(MetaKey.PROCESSED_ALGORITHM):
            raise CompositionError(
                f"this update was already processed by {dxo.get_meta_prop(MetaKey.PROCESSED_ALGORITHM)} "
                "(homomorphic encryption); encrypted updates cannot be compressed."
            )
        diff = dxo.data_kind == DataKind.WEIGHT_DIFF
        if self.config.mode == "topk" and not diff:
            raise ValueError(
                "top-k sparsification applies to updates, not full weights: list the executor's 'topk' "
                "client algorithm, which sends WEIGHT_DIFF (and set the server aggregator's "
                "expected_data_kind to WEIGHT_DIFF)."
            )
        round_index = self._round(shareable)
        self._check_algorithm(dxo, round_index)
        if self.config.error_feedback and self.config.lossy and diff:
            feedback = self._residual(fl_ctx)
            payload, _ = feedback.step(dxo.data, round_index=round_index)
            self.log_info(
                fl_ctx, f"error feedback: residual L2 norm {feedback.residual_norm():.4g} held back"
            )
        else:
            config = self.config.at_round(round_index) if round_index is not None else self.config
            payload, _ = encode_update(dxo.data, config)
        meta = dict(dxo.meta or {})
        meta[C.META_COMPRESSION] = {"mode": self.config.describe(), "kind": _kind_name(dxo.data_kind)}
        self.log_debug(
            fl_ctx, f"compressed a {meta[C.META_COMPRESSION]['kind']} DXO: {self.config.describe()}"
        )
        return DXO(data_kind=C.COMPRESSED_KIND, data=payload, meta=meta)

    def _round(self, shareable: Shareable) -> int | None:
        """The reply's round when the setting has a schedule (``None`` without one)."""
        if not self.config.scheduled:
            return None
        value = shareable.get_header(AppConstants.CURRENT_ROUND)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(
                f"the compression setting {self.config.describe()!r} changes with the round, but the "
                f"train result's {AppConstants.CURRENT_ROUND!r} header is {value!r}: the executor must "
                "set it (fedhealth's SiteExecutor does)."
            )
        return value

    def _check_algorithm(self, dxo: DXO, round_index: int | None) -> None:
        """Refuse a round whose top-k share differs from the one the site's algorithm sent."""
        metrics = dxo.get_meta_prop(C.META_SITE_METRICS, None)
        chosen = metrics.get(C.M_TOPK_K_FRACTION) if isinstance(metrics, dict) else None
        if chosen is None or self.config.mode != "topk":
            return
        mine = (
            self.config.round_k_fraction(round_index) if round_index is not None else self.config.k_fraction
        )
        if abs(mine - float(chosen)) > 1e-9 * max(mine, float(chosen)):
            raise ValueError(
                f"round {round_index}: the topk algorithm sent {float(chosen):.4g} of each tensor but "
                f"this UpdateCompressor ({self.config.describe()}) would encode {mine:.4g}: give the "
                "filter the algorithm's k_fraction, warmup_rounds, k_start and decay_rounds."
            )

    def _residual(self, fl_ctx: FLContext) -> ErrorFeedback:
        """The site's error-feedback memory, loaded from its run folder on first use."""
        if self._feedback is None:
            workspace = fl_ctx.get_engine().get_workspace()
            path = Path(workspace.get_run_dir(fl_ctx.get_job_id())) / C.RESIDUAL_FILE
            self._feedback = ErrorFeedback(self.config, path)
            if self._feedback.rounds:
                self.log_info(
                    fl_ctx, f"error-feedback residual restored after {self._feedback.rounds} rounds"
                )
        return self._feedback

    def _check_job(self, fl_ctx: FLContext) -> None:
        """Refuse a job whose site config combines compression with HE (once per job)."""
        job_id = fl_ctx.get_job_id()
        if self._checked_job == job_id:
            return
        engine = fl_ctx.get_engine()
        workspace = engine.get_workspace() if engine is not None else None
        if workspace is not None:
            path = Path(workspace.get_app_config_dir(job_id)) / JobConstants.CLIENT_JOB_CONFIG
            if path.is_file():
                check_client_filters(json.loads(path.read_text()))
        self._checked_job = job_id


def _stamp_sizes(dxo: DXO, shareable: Shareable, raw: int) -> Shareable:
    """Record the raw and the sent size in the meta; repeat until the stamped size is stable."""
    info = dict(dxo.get_meta_prop(C.META_COMPRESSION, {}))
    metrics = dxo.get_meta_prop(C.META_SITE_METRICS, None)
    chosen = metrics.get(C.M_COMPRESSION) if isinstance(metrics, dict) else None
    if chosen:  # the site's top-k algorithm chose what to send (and kept the residual); this only encoded it
        info["mode"] = chosen if info["mode"].startswith("topk") else f"{chosen}, then {info['mode']}"
    sent = 0
    for _ in range(4):
        info.update({C.M_BYTES_RAW: raw, C.M_BYTES_SENT: sent})
        dxo.set_meta_prop(C.META_COMPRESSION, info)
        if isinstance(metrics, dict):
            dxo.set_meta_prop(
                C.META_SITE_METRICS,
                {**metrics, C.M_BYTES_RAW: raw, C.M_BYTES_SENT: sent, C.M_COMPRESSION: info["mode"]},
            )
        shareable = dxo.update_shareable(shareable)
        size = serialized_size(shareable)
        if size == sent:
            break
        sent = size
    return shareable


def _kind_name(kind: object) -> str:
    """``"WEIGHT_DIFF"`` for ``DataKind.WEIGHT_DIFF`` (a str enum) and for the plain string alike."""
    return str(getattr(kind, "value", kind))
