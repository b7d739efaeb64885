"""Would the next round push a site past its privacy budget? Asked of the accountant before training.

The site's accountant is copied, the next round's steps are added at the same noise multiplier and
sample rate, and the copy's ε is compared with the budget. Nothing is spent by asking.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from opacus.accountants import IAccountant, RDPAccountant, create_accountant
from opacus.accountants.analysis import rdp as rdp_analysis

from fedhealth.constants import DP_DECLINED

# get_noise_multiplier stops within this of the target; a plan that ends exactly at the budget passes.
EPSILON_SLACK = 1e-6


class PrivacyBudgetExhaustedError(RuntimeError):
    """The next round would spend more ε than the site allows; the site declines to train."""

    def __init__(self, message: str, *, spent: float, predicted: float) -> None:
        super().__init__(message)
        self.spent = spent
        self.predicted = predicted


@lru_cache(maxsize=256)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """RDP of one step of the sampled Gaussian mechanism at Opacus's default orders (cached)."""
    orders = RDPAccountant.DEFAULT_ALPHAS
    return np.asarray(
        rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=orders)
    )


def epsilon_of(history: list[tuple[float, float, int]], *, mechanism: str, delta: float) -> float:
    """ε of an accountant ``history`` of ``(sigma, q, steps)``: the number Opacus's accountant gives.

    For RDP the per-step RDP is computed once per ``(sigma, q)`` and multiplied by the steps, exactly
    as :func:`opacus.accountants.analysis.rdp.compute_rdp` does, so a round's check costs
    microseconds instead of the accountant's ~0.2 s; other accountants are asked directly.
    """
    if not history:
        return 0.0
    if mechanism != "rdp":
        accountant = create_accountant(mechanism)
        accountant.history = list(history)
        return float(accountant.get_epsilon(delta=delta))
    rdp = sum(_rdp_per_step(float(sigma), float(q)) * steps for sigma, q, steps in history)
    eps, _ = rdp_analysis.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
    return float(eps)


def predict_epsilon(
    accountant: IAccountant, *, noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> float:
    """ε after ``steps`` more DP-SGD steps, without changing ``accountant``."""
    future = list(accountant.history) + ([(noise_multiplier, sample_rate, steps)] if steps > 0 else [])
    return epsilon_of(future, mechanism=accountant.mechanism(), delta=delta)


def check_budget(
    accountant: IAccountant,
    *,
    budget: float,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    round_index: int,
) -> float:
    """The ε the next round would reach; raises :class:`PrivacyBudgetExhaustedError` past ``budget``."""
    predicted = predict_epsilon(
        accountant, noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta
    )
    if predicted > budget + EPSILON_SLACK:
        spent = predict_epsilon(
            accountant, noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=0, delta=delta
        )
        raise PrivacyBudgetExhaustedError(
            f"{DP_DECLINED}: round {round_index} would raise epsilon from {spent:.3f} to "
            f"{predicted:.3f}, past this site's budget of {budget:.3f} (delta={delta:.2g}); the site "
            "declines to train and sends no update",
            spent=spent,
            predicted=predicted,
        )
    return predicted
