"""Update compression: blockwise quantization, top-k sparsification with error feedback, wire sizes."""
