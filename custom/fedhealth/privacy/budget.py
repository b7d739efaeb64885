"""Would the next round push a site past its privacy budget? Asked of the accountant before training.

The site's accountant is copied, the next round's steps are added at the same noise multiplier and
sample rate, and the copy's ε is compared with the budget. Nothing is spent by asking.
"""

from __future__ import annotations

import copy

from opacus.accountants import IAccountant

from fedhealth.constants import DP_DECLINED

# get_noise_multiplier stops within this of the target; a plan that ends exactly at the budget passes.
EPSILON_SLACK = 1e-6


class PrivacyBudgetExhaustedError(RuntimeError):
    """The next round would spend more ε than the site allows; the site declines to train."""

    def __init__(self, message: str, *, spent: float, predicted: float) -> None:
        super().__init__(message)
        self.spent = spent
        self.predicted = predicted


def predict_epsilon(
    accountant: IAccountant, *, noise_multiplier: float, sample_rate: float, steps: int, delta: float
) -> float:
    """ε after ``steps`` more DP-SGD steps, without changing ``accountant``."""
    future = copy.deepcopy(accountant)
    if steps > 0:
        future.history.append((noise_multiplier, sample_rate, steps))
    return float(future.get_epsilon(delta=delta)) if future.history else 0.0


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
