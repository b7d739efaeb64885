"""What a compression filter does, as data: the job config's ``mode`` switch, its settings, and a
top-k schedule (dense warm-up rounds, a k that decays) that :meth:`CompressionConfig.at_round` turns
into the plain setting of one round.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

MODES = ("none", "fp16", "int8", "int4", "topk")
VALUE_DTYPES = ("float16", "float32")
SCHEDULE_KEYS = ("k_fraction", "warmup_rounds", "k_start", "decay_rounds")  # a top-k job's share settings


@dataclass(frozen=True)
class CompressionConfig:
    """One compression setting.

    Args:
        mode: ``none`` (dense float32, still measured), ``fp16``, ``int8`` / ``int4`` (blockwise
            quantization), or ``topk`` (sparsification; meant for updates, not full weights).
        k_fraction: share of each tensor's entries that top-k sends, in (0, 1]; with a schedule, the
            share it ends at.
        error_feedback: keep what was not sent (or was rounded away) and add it to the next update.
        block_size: values per quantization block.
        value_dtype: how top-k values travel (``float16`` halves them; error feedback keeps the
            rounding error).
        warmup_rounds: top-k only: the job's first rounds (0-based rounds ``0 .. warmup_rounds - 1``)
            send the update dense, in float32 (mode ``none``), before any sparsification.
        k_start: top-k only: the share sent in the first sparse round; it decays geometrically to
            ``k_fraction`` over ``decay_rounds`` rounds (``None``: no decay).
        decay_rounds: rounds over which ``k_start`` decays to ``k_fraction``: the ``j``-th sparse round
            (``j = 0, 1, ...``) sends ``k_start * (k_fraction / k_start) ** (j / decay_rounds)``, and
            ``k_fraction`` from ``j = decay_rounds`` on.
    """

    mode: str = "none"
    k_fraction: float = 0.01
    error_feedback: bool = True
    block_size: int = 512
    value_dtype: str = "float16"
    warmup_rounds: int = 0
    k_start: float | None = None
    decay_rounds: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"compression mode must be one of {MODES}, not {self.mode!r}.")
        if not 0 < self.k_fraction <= 1:
            raise ValueError(f"k_fraction must be in (0, 1], got {self.k_fraction}.")
        if self.block_size < 16:
            raise ValueError(f"block_size must be at least 16 values, got {self.block_size}.")
        if self.value_dtype not in VALUE_DTYPES:
            raise ValueError(f"value_dtype must be one of {VALUE_DTYPES}, not {self.value_dtype!r}.")
        self._check_schedule()

    def _check_schedule(self) -> None:
        for key in ("warmup_rounds", "decay_rounds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a whole number of rounds, 0 or more, not {value!r}.")
        if self.k_start is not None:
            if isinstance(self.k_start, bool) or not isinstance(self.k_start, int | float):
                raise ValueError(
                    f"k_start must be a number in (k_fraction, 1] or null, not {self.k_start!r}."
                )
            if not self.k_fraction < self.k_start <= 1:
                raise ValueError(
                    f"k_start ({self.k_start}) must be above k_fraction ({self.k_fraction}) and at most 1: "
                    "the share sent decays from k_start to k_fraction."
                )
        if (self.k_start is None) != (self.decay_rounds == 0):
            raise ValueError(
                f"k_start ({self.k_start}) and decay_rounds ({self.decay_rounds}) go together: set both "
                "(k decays from k_start to k_fraction over decay_rounds rounds) or neither."
            )
        if self.scheduled and self.mode != "topk":
            raise ValueError(
                f"warmup_rounds, k_start and decay_rounds schedule top-k only, but the mode is {self.mode!r}."
            )

    @property
    def scheduled(self) -> bool:
        """Whether the setting changes with the round (dense warm-up rounds or a decaying k)."""
        return self.warmup_rounds > 0 or self.k_start is not None

    @property
    def lossy(self) -> bool:
        """Whether decoding can differ from the input (everything but ``none``)."""
        return self.mode != "none"

    def at_round(self, round_index: int) -> CompressionConfig:
        """The plain (unscheduled) setting of the job's round ``round_index`` (0-based).

        A warm-up round gives mode ``none`` (dense float32); a decay round gives top-k at its share;
        an unscheduled setting is returned as it is.
        """
        if isinstance(round_index, bool) or not isinstance(round_index, int) or round_index < 0:
            raise ValueError(f"a round index is a whole number, 0 or more, not {round_index!r}.")
        if not self.scheduled:
            return self
        plain = replace(self, warmup_rounds=0, k_start=None, decay_rounds=0)
        if round_index < self.warmup_rounds:
            return replace(plain, mode="none")
        j = round_index - self.warmup_rounds
        if self.k_start is not None and j < self.decay_rounds:
            k = self.k_start * (self.k_fraction / self.k_start) ** (j / self.decay_rounds)
            return replace(plain, k_fraction=k)
        return plain

    @property
    def largest_k_fraction(self) -> float:
        """The largest share of each tensor any round sends: 1.0 with dense warm-up rounds."""
        if self.mode != "topk" or self.warmup_rounds:
            return 1.0
        return self.k_start if self.k_start is not None else self.k_fraction

    def round_k_fraction(self, round_index: int) -> float:
        """The share of each tensor that round ``round_index`` sends (1.0 when it is not top-k)."""
        config = self.at_round(round_index)
        return config.k_fraction if config.mode == "topk" else 1.0

    def describe(self) -> str:
        """A short label for logs and reports, e.g. ``topk 0.01 +EF`` or ``int8 (block 512)``.

        A schedule's label starts with the largest share any round sends (``topk 1 to 0.01 +EF (2
        dense rounds)``), so a reader of ``topk <k>`` never understates what left a site.
        """
        ef = " +EF" if self.error_feedback else ""
        if self.mode == "topk" and self.scheduled:
            first = 1.0 if self.warmup_rounds else self.k_start
            parts = [f"{self.warmup_rounds} dense round{'s' if self.warmup_rounds > 1 else ''}"]
            parts = parts if self.warmup_rounds else []
            if self.k_start is not None:
                parts.append(f"{self.k_start:.3g} decaying over {self.decay_rounds} rounds")
            return f"topk {first:.3g} to {self.k_fraction:.3g}{ef} ({', then '.join(parts)})"
        if self.mode == "topk":
            return f"topk {self.k_fraction:.3g}{ef}"
        if self.mode in ("int8", "int4"):
            return f"{self.mode} (block {self.block_size}){ef}"
        return self.mode


def largest_topk_share(args: Mapping[str, object]) -> float:
    """The largest share any round sends under a ``topk`` algorithm's (or top-k filter's) job args.

    What a privacy reading of the job must use: with a schedule, the early rounds send more than
    ``k_fraction`` (dense warm-up rounds send everything).
    """
    settings = {k: args[k] for k in SCHEDULE_KEYS if args.get(k) is not None}
    return CompressionConfig(mode="topk", **settings).largest_k_fraction  # type: ignore[arg-type]
