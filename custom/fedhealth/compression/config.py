"""What a compression filter does, as data: the job config's ``mode`` switch and its settings."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("none", "fp16", "int8", "int4", "topk")
VALUE_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class CompressionConfig:
    """One compression setting.

    Args:
        mode: ``none`` (dense float32, still measured), ``fp16``, ``int8`` / ``int4`` (blockwise
            quantization), or ``topk`` (sparsification; meant for updates, not full weights).
        k_fraction: share of each tensor's entries that top-k sends, in (0, 1].
        error_feedback: keep what was not sent (or was rounded away) and add it to the next update.
        block_size: values per quantization block.
        value_dtype: how top-k values travel (``float16`` halves them; error feedback keeps the
            rounding error).
    """

    mode: str = "none"
    k_fraction: float = 0.01
    error_feedback: bool = True
    block_size: int = 512
    value_dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"compression mode must be one of {MODES}, not {self.mode!r}.")
        if not 0 < self.k_fraction <= 1:
            raise ValueError(f"k_fraction must be in (0, 1], got {self.k_fraction}.")
        if self.block_size < 16:
            raise ValueError(f"block_size must be at least 16 values, got {self.block_size}.")
        if self.value_dtype not in VALUE_DTYPES:
            raise ValueError(f"value_dtype must be one of {VALUE_DTYPES}, not {self.value_dtype!r}.")

    @property
    def lossy(self) -> bool:
        """Whether decoding can differ from the input (everything but ``none``)."""
        return self.mode != "none"

    def describe(self) -> str:
        """A short label for logs and reports, e.g. ``topk 1% +EF`` or ``int8 (block 512)``."""
        if self.mode == "topk":
            return f"topk {self.k_fraction:.3g}{' +EF' if self.error_feedback else ''}"
        if self.mode in ("int8", "int4"):
            return f"{self.mode} (block {self.block_size}){' +EF' if self.error_feedback else ''}"
        return self.mode
