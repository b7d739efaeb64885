"""What an HE update holds: which layers travelled encrypted, how many values, its clear equivalent.

FLARE-free helpers for the server's meter and the benchmark. A layer is "encrypted" when it
arrived as a CKKS vector; everything else (layers a job chose not to encrypt) travelled in clear.
"""

from __future__ import annotations

import numpy as np
import tenseal as ts


def _size(value: object) -> int:
    return int(value.size()) if isinstance(value, ts.CKKSVector) else int(np.size(value))


def layer_split(data: dict) -> dict:
    """Names and value counts of the encrypted and the clear layers of one update."""
    encrypted = sorted(k for k, v in data.items() if isinstance(v, ts.CKKSVector))
    clear = sorted(k for k in data if k not in encrypted)
    return {
        "encrypted_layers": encrypted,
        "clear_layers": clear,
        "values_encrypted": sum(_size(data[k]) for k in encrypted),
        "values_clear": sum(_size(data[k]) for k in clear),
    }


def plain_equivalent(data: dict) -> dict[str, np.ndarray]:
    """The same update as float32 arrays (zeros), to measure what it would cost in clear."""
    return {k: np.zeros(_size(v), dtype=np.float32) for k, v in data.items()}
