"""Site privacy filter: Gaussian noise on every model update the site sends.

For a site's ``privacy.json`` scope (``task_result_filters``). Adds N(0, sigma^2) to each value
of outgoing weights or weight differences (:func:`fedhealth.policy.update_rules.add_gaussian_noise`).
Noise without clipping is not a differential-privacy guarantee; see the module it calls.
"""

from __future__ import annotations

import math

import numpy as np
from nvflare.apis.dxo import DXO, DataKind
from nvflare.apis.dxo_filter import DXOFilter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable

from fedhealth.constants import META_PRIVACY
from fedhealth.filters.model_update import model_dxo
from fedhealth.policy.update_rules import add_gaussian_noise


class GaussianNoise(DXOFilter):
    """Adds Gaussian noise to every outgoing model update.

    Args:
        sigma: standard deviation of the noise, in the units of the weights.
        seed: seed of the noise generator (None: fresh randomness, the production setting).
    """

    def __init__(self, sigma: float, seed: int | None = None) -> None:
        super().__init__(
            supported_data_kinds=[DataKind.WEIGHTS, DataKind.WEIGHT_DIFF],
            data_kinds_to_filter=[DataKind.WEIGHTS, DataKind.WEIGHT_DIFF],
        )
        if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"GaussianNoise needs a finite sigma >= 0, got {sigma!r}.")
        self.sigma = float(sigma)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        if model_dxo(shareable) is None:
            return shareable  # statistics, metrics: not a model update
        return super().process(shareable, fl_ctx)

    def process_dxo(self, dxo: DXO, shareable: Shareable, fl_ctx: FLContext) -> DXO | None:
        dxo.data = add_gaussian_noise(dxo.data, sigma=self.sigma, rng=self._rng)
        stamps = list(dxo.get_meta_prop(META_PRIVACY) or [])
        stamps.append({"filter": "GaussianNoise", "sigma": self.sigma})
        dxo.set_meta_prop(META_PRIVACY, stamps)
        self.log_info(fl_ctx, f"privacy scope: Gaussian noise sigma={self.sigma} on the update")
        return dxo
