"""A fault-drill filter: makes one site send a broken update, to prove the server rejects it.

For tests and fault benchmarks only: a job copy deploys it as a ``task_result_filters`` entry on
one site. ``mode="nan"`` puts NaN into the first parameter; ``mode="scale"`` multiplies every
weight by ``factor`` (a x100 update); ``mode="slow"`` holds the result back ``delay_s`` seconds (a
straggler). It never ships in the jobs under ``jobs/``, and it is not in the site runtime
(``fedhealth``): only a POC federation, whose sites run with the tools installed, can load it, and
only when its kits allow it (``fedhealth_tools.poc.variants.FAULT_FILTER``).
"""

from __future__ import annotations

import time

import numpy as np
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.dxo_filter import DXOFilter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

MODES = ("nan", "scale", "slow")


def corrupt(weights: dict[str, np.ndarray], *, mode: str, factor: float = 100.0) -> dict[str, np.ndarray]:
    """A corrupted copy of ``weights`` (FLARE-free, for tests too)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}.")
    out = {k: np.array(v, dtype=np.float32, copy=True) for k, v in weights.items()}
    if mode == "slow":
        return out
    if mode == "nan":
        first = next(iter(out))
        out[first].reshape(-1)[0] = np.nan
    else:
        out = {k: v * np.float32(factor) for k, v in out.items()}
    return out


class FaultInjector(DXOFilter):
    """Corrupts the site's outgoing model weights.

    Args:
        mode: ``"nan"`` or ``"scale"``.
        factor: the multiplier of ``"scale"``.
        delay_s: how long ``"slow"`` holds the result back.
    """

    def __init__(self, *, mode: str = "nan", factor: float = 100.0, delay_s: float = 5.0) -> None:
        super().__init__(supported_data_kinds=[DataKind.WEIGHTS], data_kinds_to_filter=[DataKind.WEIGHTS])
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}.")
        self.mode = mode
        self.factor = factor
        self.delay_s = delay_s

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO | None:
        if self.mode == "slow":
            self.log_warning(fl_ctx, f"fault drill: holding the update back {self.delay_s} s")
            time.sleep(self.delay_s)
            return dxo
        self.log_warning(fl_ctx, f"fault drill: sending a corrupted update ({self.mode})")
        dxo.data = corrupt(dxo.data, mode=self.mode, factor=self.factor)
        return dxo
