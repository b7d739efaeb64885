"""Update compression: blockwise quantization, top-k sparsification with error feedback (no nvflare)."""
