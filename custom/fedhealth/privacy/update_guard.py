"""The checks a site runs on its own model update before it hides it (masking, encryption).

Under secure aggregation (SecAgg+ masks, CKKS ciphertexts) the server cannot look at one site's
update: it cannot refuse a NaN or an absurd norm the way
:class:`~fedhealth.aggregators.robust_aggregator.RobustAggregator` does in the clear. So the site
checks before the update leaves: every value must be finite (a NaN or infinity is refused with the
layer's name, never sent), and the update's L2 norm over all layers together is clipped to
``max_norm`` (scaled down, direction kept). The server can then check the unmasked sum against
``sites × max_norm`` (:func:`sum_within_bound`).

The clip is what makes SecAgg+'s fixed-point encoding overflow-free: every coordinate of a clipped
update lies in ``[-max_norm, max_norm]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

Update = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class GuardedUpdate:
    """An update that passed :func:`guard_update`.

    Attributes:
        update: parameter name -> float64 array, L2 norm at most ``max_norm``.
        norm: the L2 norm before clipping.
        clipped: whether the update was scaled down.
    """

    update: dict[str, np.ndarray]
    norm: float
    clipped: bool


def check_max_norm(max_norm: float, *, where: str) -> float:
    """``max_norm`` as a float, or a ``ValueError`` naming ``where`` it was set."""
    try:
        value = float("nan") if isinstance(max_norm, bool) else float(max_norm)  # True is no bound
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{where}: max_norm must be a positive finite number, got {max_norm!r}.")
    return value


def guard_update(update: Update, *, max_norm: float, where: str = "the update") -> GuardedUpdate:
    """Refuse non-finite values, then clip the L2 norm of ``update`` (all layers together) to ``max_norm``.

    Args:
        update: parameter name -> the site's update (local minus received weights).
        max_norm: the L2 bound from the job's config.
        where: what the update is, for the messages (e.g. ``"site-1's round 3 update"``).

    Raises:
        ValueError: a layer holds NaN or infinity (the message names the layers and counts, never a
            value), the update is empty, or ``max_norm`` is not positive.
    """
    bound = check_max_norm(max_norm, where=where)
    if not update:
        raise ValueError(f"{where} has no parameters.")
    arrays = {name: np.asarray(value, dtype=np.float64) for name, value in update.items()}
    bad = {name: int(np.size(a) - np.count_nonzero(np.isfinite(a))) for name, a in arrays.items()}
    bad = {name: n for name, n in bad.items() if n}
    if bad:
        listed = ", ".join(f"{name} ({n} values)" for name, n in sorted(bad.items()))
        raise ValueError(
            f"{where} holds NaN or infinite values in {listed}; refused before it leaves the site "
            "(the local training diverged: lower the learning rate or check the data)."
        )
    norm = float(np.sqrt(sum(float(np.sum(np.square(a))) for a in arrays.values())))
    if norm <= bound:
        return GuardedUpdate(update=arrays, norm=norm, clipped=False)
    scale = bound / norm
    return GuardedUpdate(update={k: a * scale for k, a in arrays.items()}, norm=norm, clipped=True)


def sum_within_bound(total_norm: float, *, weight_sum: float, max_norm: float, slack: float = 1e-6) -> bool:
    """Whether a sum of clipped updates, weighted by ``w_i`` summing to ``weight_sum``, can be honest.

    Each site's update has norm at most ``max_norm``, so ``||Σ w_i x_i|| <= weight_sum × max_norm``
    (``weight_sum`` is the number of sites for an unweighted sum). ``slack`` (relative) absorbs the
    fixed-point rounding.
    """
    return bool(np.isfinite(total_norm) and total_norm <= weight_sum * max_norm * (1.0 + slack) + 1e-12)
