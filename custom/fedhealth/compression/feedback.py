"""Error-feedback memory of one site: what it has not yet sent, kept across rounds and restarts.

``step`` compresses ``update + residual`` and keeps ``update + residual - sent`` as the new
residual (float64, so that sent plus residual equals what was to be sent, exactly). The residual is
written to the site's own workspace after every round (atomically: a crash never leaves half a
file) and read back when the site process restarts within the same job. It never leaves the site.

With a top-k schedule (:meth:`CompressionConfig.at_round`) each round is compressed at its own
setting and the residual carries across the switches: a dense warm-up round sends everything but the
float32 rounding, so the first sparse round starts from an all but empty residual; a k that decays
only changes how much of the residual each round sends.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fedhealth.compression.codec import encode_update
from fedhealth.compression.config import CompressionConfig


class ErrorFeedback:
    """The residual of one site, optionally persisted to ``path`` (an ``.npz`` file).

    Args:
        config: the compression setting (``error_feedback`` must be on).
        path: where to keep the residual between rounds; ``None`` keeps it in memory only.
    """

    def __init__(self, config: CompressionConfig, path: str | Path | None = None) -> None:
        if not config.error_feedback:
            raise ValueError("ErrorFeedback needs a config with error_feedback=True.")
        self.config = config
        self.path = Path(path) if path is not None else None
        self.residual: dict[str, np.ndarray] = {}
        self.rounds = 0
        if self.path is not None and self.path.is_file():
            self._load()

    def step(
        self, update: dict[str, np.ndarray], *, round_index: int | None = None
    ) -> tuple[dict, dict[str, np.ndarray]]:
        """Compress ``update`` plus the residual; update and persist the residual.

        Args:
            update: the round's raw update, by name.
            round_index: the job's round (0-based); needed when the config has a schedule.

        Returns:
            ``(payload, sent)`` as :func:`fedhealth.compression.codec.encode_update`.
        """
        if self.config.scheduled and round_index is None:
            raise ValueError(
                f"the compression setting {self.config.describe()!r} changes with the round: "
                "ErrorFeedback.step needs the round_index."
            )
        config = self.config.at_round(round_index) if round_index is not None else self.config
        payload, sent = encode_update(update, config, self.residual or None)
        new = {}
        for name, value in update.items():
            array = np.asarray(value)
            if array.dtype.kind != "f":
                continue
            total = array.astype(np.float64).ravel() + self.residual.get(name, 0.0)
            new[name] = total - sent[name]
        self.residual = new
        self.rounds += 1
        self._save()
        return payload, sent

    def residual_norm(self) -> float:
        """L2 norm of the residual over all tensors (an aggregate number, safe to log)."""
        return float(np.sqrt(sum(float(np.dot(r, r)) for r in self.residual.values())))

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, __rounds__=np.array(self.rounds), **{f"r/{k}": v for k, v in self.residual.items()})
        os.replace(tmp, self.path)

    def _load(self) -> None:
        try:
            with np.load(self.path) as data:
                self.rounds = int(data["__rounds__"])
                self.residual = {k[2:]: data[k].astype(np.float64) for k in data.files if k.startswith("r/")}
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(
                f"the error-feedback residual in {self.path} is unreadable ({exc}); delete it to restart "
                "error feedback from zero (the updates it held are then lost)."
            ) from exc
