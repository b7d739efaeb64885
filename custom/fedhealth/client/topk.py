"""Top-k sparsification with error feedback (Stich et al. 2018; Karimireddy et al. 2019) at the site.

The site sends its update (local minus received weights, ``WEIGHT_DIFF``) with only the largest
``k_fraction`` of each tensor's entries; with error feedback what was not sent is added to the next
update (the memory lives in the site's run folder and survives a restart). The arithmetic is
:mod:`fedhealth.compression`; the job's ``UpdateCompressor`` filter then encodes the sparse update for
the wire. Composes with DP-SGD (sparsifying a private update is post-processing).

A schedule (:class:`~fedhealth.compression.config.CompressionConfig`'s ``warmup_rounds``, ``k_start``,
``decay_rounds``) sends the job's first rounds dense and/or a larger share early; the round is the
task's (``RoundInput.round_index``), so every site follows the same schedule and a restarted site
picks it up where the job is. The round's share goes out as the ``topk_k_fraction`` metric (1.0 in a
dense round), which the ``UpdateCompressor`` filter checks its own schedule against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedhealth import constants as C
from fedhealth.client.base import (
    WEIGHT_DIFF,
    AlgorithmContext,
    ClientAlgorithm,
    RoundState,
    register_algorithm,
)
from fedhealth.compression.codec import encode_update
from fedhealth.compression.config import CompressionConfig
from fedhealth.compression.feedback import ErrorFeedback


@register_algorithm
@dataclass
class TopK(ClientAlgorithm):
    """Top-k with error feedback.

    Args:
        k_fraction: share of each tensor's entries sent, in (0, 1].
        error_feedback: keep what was not sent and add it to the next update.
        value_dtype: precision of the values sent (``float16`` or ``float32``).
        warmup_rounds: the job's first rounds send the update dense (float32, nothing held back).
        k_start: the share of the first sparse round, decaying geometrically to ``k_fraction``.
        decay_rounds: rounds over which ``k_start`` decays to ``k_fraction``.
    """

    k_fraction: float = 0.01
    error_feedback: bool = True
    value_dtype: str = "float16"
    warmup_rounds: int = 0
    k_start: float | None = None
    decay_rounds: int = 0
    name = "topk"
    _feedback: ErrorFeedback | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.config  # checks k_fraction, value_dtype and the schedule  # noqa: B018

    @property
    def config(self) -> CompressionConfig:
        return CompressionConfig(
            mode="topk",
            k_fraction=self.k_fraction,
            error_feedback=self.error_feedback,
            value_dtype=self.value_dtype,
            warmup_rounds=self.warmup_rounds,
            k_start=self.k_start,
            decay_rounds=self.decay_rounds,
        )

    def start(self, context: AlgorithmContext) -> None:
        if self.error_feedback:
            path = context.run_dir / C.TOPK_RESIDUAL_FILE if context.run_dir is not None else None
            self._feedback = ErrorFeedback(self.config, path)

    def after_round(self, state: RoundState) -> None:
        diff = {
            k: np.asarray(v) - state.start[k].astype(np.asarray(v).dtype) for k, v in state.update.items()
        }
        config, round_index = self.config, state.rnd.round_index
        if self._feedback is not None:
            _, sent = self._feedback.step(diff, round_index=round_index)
        else:
            _, sent = encode_update(diff, config.at_round(round_index))
        state.update = {k: sent[k].reshape(diff[k].shape).astype(diff[k].dtype) for k in diff}
        state.kind = WEIGHT_DIFF
        state.metrics[C.M_COMPRESSION] = config.describe()  # e.g. "topk 0.1 +EF"; the filter keeps it
        state.metrics[C.M_TOPK_K_FRACTION] = config.round_k_fraction(round_index)
        if self._feedback is not None:
            state.metrics["ef_residual_norm"] = self._feedback.residual_norm()
