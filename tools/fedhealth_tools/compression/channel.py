"""The site-to-server path of a compressed update, for the in-process twin and benchmarks.

It does what the FLARE filters do to one update, in one call: the site's weight difference is
compressed (with the site's own error-feedback memory), serialized as FLARE would send it, and
decoded at the server into new weights. Both message sizes are measured, not computed from a
formula. A top-k schedule follows each site's round (its count of updates so far, unless the caller
names the round).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from nvflare.apis.dxo import DXO, DataKind

from fedhealth import constants as C
from fedhealth.compression.codec import decode_update, encode_update
from fedhealth.compression.config import CompressionConfig
from fedhealth.compression.feedback import ErrorFeedback
from fedhealth.filters.wire import serialized_size


class CompressedChannel:
    """Compress, measure and decode each site's update (``weights - global``).

    Args:
        config: the compression setting every site uses.

    Attributes:
        bytes_raw: per site, the serialized size of each round's uncompressed update.
        bytes_sent: per site, the serialized size of each round's compressed update.
    """

    def __init__(self, config: CompressionConfig) -> None:
        self.config = config
        self._feedback: dict[str, ErrorFeedback] = {}
        self.bytes_raw: dict[str, list[int]] = defaultdict(list)
        self.bytes_sent: dict[str, list[int]] = defaultdict(list)

    def __call__(
        self,
        site: str,
        weights: dict[str, np.ndarray],
        global_weights: dict[str, np.ndarray],
        *,
        round_index: int | None = None,
    ) -> dict[str, np.ndarray]:
        """What the server reconstructs from ``site``'s locally trained ``weights``.

        Args:
            site: the site's name (each site keeps its own error-feedback memory).
            weights: the site's weights after local training.
            global_weights: the global model it started from.
            round_index: the job's round (0-based); default: how many updates ``site`` sent before.
        """
        if round_index is None:
            round_index = len(self.bytes_sent[site])
        diff = {
            k: np.asarray(weights[k], np.float32) - np.asarray(global_weights[k], np.float32) for k in weights
        }
        if self.config.error_feedback and self.config.lossy:
            if site not in self._feedback:
                self._feedback[site] = ErrorFeedback(self.config)
            payload, _ = self._feedback[site].step(diff, round_index=round_index)
        else:
            payload, _ = encode_update(diff, self.config.at_round(round_index))
        self.bytes_raw[site].append(serialized_size(DXO(DataKind.WEIGHT_DIFF, data=diff).to_shareable()))
        self.bytes_sent[site].append(serialized_size(DXO(C.COMPRESSED_KIND, data=payload).to_shareable()))
        decoded = decode_update(payload)
        return {k: np.asarray(global_weights[k], np.float32) + decoded[k] for k in weights}

    def totals(self) -> dict[str, float]:
        """Total bytes over all sites and rounds, before and after, and their ratio."""
        raw = sum(sum(v) for v in self.bytes_raw.values())
        sent = sum(sum(v) for v in self.bytes_sent.values())
        rounds = max((len(v) for v in self.bytes_sent.values()), default=0)
        sites = max(len(self.bytes_sent), 1)
        return {
            "bytes_raw": raw,
            "bytes_sent": sent,
            "bytes_ratio": raw / sent if sent else float("nan"),
            "bytes_per_round_per_site": sent / max(rounds * sites, 1),
        }
