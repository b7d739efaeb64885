"""Checks on sites' model updates and Byzantine-robust aggregation rules, FLARE-free.

A site's *update* is its locally trained weights minus the global weights it started from. The
server checks each update before it can reach the global model (:func:`validate_update`,
:func:`norm_outliers`) and then combines the survivors with one of five rules
(:func:`aggregate_updates`):

* ``"mean"``: the sample-weighted mean (FedAvg, McMahan et al. 2017).
* ``"median"``: the coordinate-wise median (Yin et al. 2018, "Byzantine-Robust Distributed Learning:
  Towards Optimal Statistical Rates", ICML).
* ``"trimmed_mean"``: the coordinate-wise β-trimmed mean (Yin et al. 2018).
* ``"clipped_mean"``: the sample-weighted mean of updates clipped to an L2 norm bound (Sun et al. 2019,
  "Can You Really Backdoor Federated Learning?", arXiv:1911.07963).
* ``"fednova"``: the sample-weighted mean of updates normalized by each site's local step count, rescaled
  by the effective step count (Wang et al. 2020, "Tackling the Objective Inconsistency Problem in
  Heterogeneous Federated Optimization", NeurIPS). A site that does fewer steps (a slow site with a
  capped workload) then pulls the model in its own direction as hard as a site that does them all.

The median and the trimmed mean are unweighted, as in Yin et al.: a site that claims many samples
must not buy itself more say in a rule meant to resist lying sites.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

RULES = ("mean", "median", "trimmed_mean", "clipped_mean", "fednova")
MIN_SITES_FOR_NORM_CHECK = 3

Update = Mapping[str, np.ndarray]


def validate_update(update: Update, *, reference: Update) -> str | None:
    """Check one site's update (or weights) against the global model's parameters.

    Args:
        update: parameter name -> array sent by the site.
        reference: parameter name -> array of the current global model.

    Returns:
        ``None`` when the update has exactly the reference's parameter names and shapes and only
        finite numbers; otherwise a sentence that says what is wrong.
    """
    missing = sorted(set(reference) - set(update))
    if missing:
        return f"The update lacks parameter(s) {', '.join(missing)} of the global model."
    extra = sorted(set(update) - set(reference))
    if extra:
        return f"The update has parameter(s) {', '.join(extra)} that the global model does not have."
    for name in sorted(reference):
        try:
            value = np.asarray(update[name])
        except (TypeError, ValueError):
            return f"Parameter {name} is a {type(update[name]).__name__}, not an array of numbers."
        expected = np.shape(reference[name])
        if value.shape != expected:
            return f"Parameter {name} has shape {value.shape} but the global model's is {expected}."
        if not np.issubdtype(value.dtype, np.number):
            return f"Parameter {name} holds {value.dtype} values, not numbers."
        n_bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if n_bad:
            return f"Parameter {name} has {n_bad} non-finite value(s) (NaN or Inf) out of {value.size}."
    return None


def update_norm(update: Update) -> float:
    """The L2 norm of an update, all its parameters taken as one vector."""
    return math.sqrt(sum(float(np.sum(np.square(np.asarray(v, dtype="float64")))) for v in update.values()))


def norm_outliers(norms: Mapping[str, float], *, max_ratio: float) -> dict[str, str]:
    """Sites whose update norm exceeds ``max_ratio`` times the median norm of all sites.

    The median is taken over every site, the suspect included. It needs at least
    ``MIN_SITES_FOR_NORM_CHECK`` (3) sites; with fewer, no site is flagged. With 2 sites the median is
    the mean of the two norms, so for ``max_ratio >= 2`` neither can exceed it and, more to the point,
    nothing tells which of two disagreeing sites is the odd one. When the median is 0 (most sites sent
    no change), any site with a non-zero norm is flagged.

    Args:
        norms: site name -> L2 norm of its update (:func:`update_norm`).
        max_ratio: how many times the median norm a site may reach; at least 1.

    Returns:
        site name -> reason, for the flagged sites only.

    Raises:
        ValueError: if ``max_ratio`` is below 1 or a norm is negative or NaN.
    """
    if not max_ratio >= 1:
        raise ValueError(
            f"max_ratio must be at least 1 (a site at the median is no outlier), got {max_ratio}."
        )
    for site, norm in norms.items():
        if math.isnan(norm) or norm < 0:
            raise ValueError(f"The update norm of {site} must be a non-negative number, got {norm}.")
    if len(norms) < MIN_SITES_FOR_NORM_CHECK:
        return {}
    median = float(np.median(list(norms.values())))
    limit = max_ratio * median
    return {
        site: (
            f"Its update norm {norm:.4g} is {norm / median:.3g} times the median norm {median:.4g} "
            f"of {len(norms)} sites; at most {max_ratio:g} times is allowed."
            if median > 0
            else f"Its update norm {norm:.4g} is above 0, the median norm of {len(norms)} sites."
        )
        for site, norm in norms.items()
        if norm > limit
    }


def screen_updates(
    trained: Mapping[str, Update], starts: Mapping[str, Update], *, max_norm_ratio: float | None
) -> dict[str, str]:
    """The sites whose trained weights must not be averaged, each with the reason.

    Each site's weights are checked against the model it started from (:func:`validate_update`), then
    the updates (weights minus start) of the sites that pass are compared by norm (:func:`norm_outliers`)
    unless ``max_norm_ratio`` is ``None``. Sites may start from different models (one per cluster).

    Args:
        trained: site -> the weights it sent.
        starts: site -> the weights it was sent.
        max_norm_ratio: how many times the median update norm a site may reach; ``None``: no norm check.
    """
    reasons = {}
    for site in sorted(trained):
        reason = validate_update(trained[site], reference=starts[site])
        if reason is not None:
            reasons[site] = reason
    if max_norm_ratio is not None:
        norms = {
            site: update_norm(
                {k: np.subtract(v, starts[site][k], dtype="float64") for k, v in weights.items()}
            )
            for site, weights in trained.items()
            if site not in reasons
        }
        reasons.update(norm_outliers(norms, max_ratio=max_norm_ratio))
    return reasons


def _check(updates: Sequence[Update]) -> tuple[list[str], int]:
    if not updates:
        raise ValueError("Robust aggregation needs at least one update.")
    names = sorted(updates[0])
    for i, update in enumerate(updates[1:], start=1):
        if sorted(update) != names:
            raise ValueError(f"Update {i} has parameters {sorted(update)} but update 0 has {names}.")
        for name in names:
            if np.shape(update[name]) != np.shape(updates[0][name]):
                raise ValueError(
                    f"Parameter {name} of update {i} has shape {np.shape(update[name])} "
                    f"but update 0's is {np.shape(updates[0][name])}."
                )
    return names, len(updates)


def _stack(updates: Sequence[Update], name: str) -> np.ndarray:
    return np.stack([np.asarray(u[name], dtype="float64") for u in updates])


def weighted_mean(updates: Sequence[Update], weights: Sequence[float]) -> dict[str, np.ndarray]:
    """Sample-weighted mean of updates (FedAvg, McMahan et al. 2017).

    Raises:
        ValueError: on no updates, mismatched lengths or parameters, or weights that are negative or
            sum to 0.
    """
    names, n = _check(updates)
    if len(weights) != n:
        raise ValueError(f"Got {n} updates but {len(weights)} weights.")
    w = np.asarray(weights, dtype="float64")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"Weights must be finite and non-negative with a positive sum, got {list(weights)}.")
    w = w / w.sum()
    return {name: np.tensordot(w, _stack(updates, name), axes=1) for name in names}


def coordinate_median(updates: Sequence[Update]) -> dict[str, np.ndarray]:
    """Coordinate-wise median of updates, unweighted (Yin et al. 2018, Option I).

    With an even number of updates each coordinate is the mean of its two middle values.
    """
    names, _ = _check(updates)
    return {name: np.median(_stack(updates, name), axis=0) for name in names}


def trimmed_mean(updates: Sequence[Update], *, trim_fraction: float) -> dict[str, np.ndarray]:
    """Coordinate-wise β-trimmed mean of updates, unweighted (Yin et al. 2018, Option II).

    For each coordinate, the ``⌊β·n⌋`` largest and ``⌊β·n⌋`` smallest of the ``n`` values are dropped
    and the rest averaged, as ``scipy.stats.trim_mean(values, β)`` does. A warning is issued when
    ``⌊β·n⌋`` is 0 for a positive β, since the result is then the plain mean.

    Args:
        updates: the sites' updates.
        trim_fraction: β, the fraction cut at each end; in ``[0, 0.5)``.

    Raises:
        ValueError: if ``trim_fraction`` is outside ``[0, 0.5)`` or the updates do not match.
    """
    if not 0 <= trim_fraction < 0.5:
        raise ValueError(
            f"trim_fraction must be in [0, 0.5) so that at least one value per coordinate is left, "
            f"got {trim_fraction}."
        )
    names, n = _check(updates)
    k = math.floor(trim_fraction * n)
    if k == 0 and trim_fraction > 0:
        warnings.warn(
            f"trim_fraction {trim_fraction} trims floor({trim_fraction} * {n}) = 0 of {n} updates at each "
            f"end, so the trimmed mean is the plain mean (trim_fraction * n must reach 1 to trim a value).",
            stacklevel=2,
        )
    return {name: np.sort(_stack(updates, name), axis=0)[k : n - k].mean(axis=0) for name in names}


def clip_by_norm(update: Update, *, max_norm: float) -> dict[str, np.ndarray]:
    """Scale an update down so that its L2 norm is at most ``max_norm`` (Sun et al. 2019).

    Returns ``update * min(1, max_norm / ||update||)``, in float64; an update within the bound is
    returned unchanged.

    Raises:
        ValueError: if ``max_norm`` is not positive.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}.")
    norm = update_norm(update)
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return {name: np.asarray(value, dtype="float64") * scale for name, value in update.items()}


def norm_clipped_mean(
    updates: Sequence[Update], weights: Sequence[float], *, clip_norm: float
) -> dict[str, np.ndarray]:
    """Sample-weighted mean of updates each clipped to L2 norm ``clip_norm`` (Sun et al. 2019)."""
    return weighted_mean([clip_by_norm(u, max_norm=clip_norm) for u in updates], weights)


def _check_steps(steps: Sequence[float], n: int) -> np.ndarray:
    if len(steps) != n:
        raise ValueError(f"Got {n} updates but {len(steps)} local step counts.")
    tau = np.asarray(steps, dtype="float64")
    if not (np.isfinite(tau).all() and (tau > 0).all()):
        raise ValueError(f"Local step counts must be finite and positive, got {list(steps)}.")
    return tau


def effective_steps(weights: Sequence[float], steps: Sequence[float]) -> float:
    """FedNova's τ_eff = Σ p_i τ_i with p_i the normalized weights (Wang et al. 2020).

    Computed as ``min τ + Σ p_i (τ_i - min τ)``, which is the same number but exactly ``τ`` when every
    site took ``τ`` steps, so that FedNova then reproduces the weighted mean bit for bit.

    Raises:
        ValueError: on mismatched lengths, bad weights, or step counts that are not finite and positive.
    """
    tau = _check_steps(steps, len(weights))
    w = np.asarray(weights, dtype="float64")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"Weights must be finite and non-negative with a positive sum, got {list(weights)}.")
    p = w / w.sum()
    low = float(tau.min())
    return low + float(np.dot(p, tau - low))


def normalized_updates(updates: Sequence[Update], steps: Sequence[float]) -> list[dict[str, np.ndarray]]:
    """FedNova's per-step updates d_i = Δ_i / τ_i, in float64 (Wang et al. 2020)."""
    tau = _check_steps(steps, len(updates))
    return [
        {k: np.asarray(v, dtype="float64") / t for k, v in u.items()}
        for u, t in zip(updates, tau, strict=True)
    ]


def fednova(
    updates: Sequence[Update], weights: Sequence[float], steps: Sequence[float]
) -> dict[str, np.ndarray]:
    """FedNova: the weighted mean of step-normalized updates, rescaled by τ_eff (Wang et al. 2020).

    Wang et al. 2020, "Tackling the Objective Inconsistency Problem in Heterogeneous Federated
    Optimization" (NeurIPS), Section 4, for local SGD (a_i = [1, ..., 1], so ||a_i||_1 = τ_i).
    Site i took τ_i local steps and sent Δ_i. With p_i the normalized weights (sample counts), the
    global update is ``τ_eff · Σ p_i Δ_i / τ_i`` with ``τ_eff = Σ p_i τ_i``. FedAvg (``Σ p_i Δ_i``)
    instead lets a site that ran more steps dominate the direction and so optimizes a different
    objective; FedNova weights each site's *direction* by ``p_i`` whatever its workload. When every
    τ_i is equal the two agree exactly. The normalization is exact for plain local SGD; with momentum,
    Adam or a FedProx term the paper's a_i differ and dividing by τ_i is an approximation.

    Args:
        updates: the sites' updates (trained weights minus the global weights).
        weights: one per update, e.g. its number of training samples.
        steps: one per update, the local optimizer steps it took (τ_i > 0).

    Raises:
        ValueError: on mismatched lengths or parameters, bad weights, or steps that are not positive.
    """
    names, n = _check(updates)
    if len(weights) != n:
        raise ValueError(f"Got {n} updates but {len(weights)} weights.")
    tau = _check_steps(steps, n)
    tau_eff = effective_steps(weights, steps)
    # Σ p_i (τ_eff / τ_i) Δ_i; the factors are exactly 1 when all τ_i are equal.
    scaled = [
        {k: np.asarray(u[k], dtype="float64") * (tau_eff / t) for k in names}
        for u, t in zip(updates, tau, strict=True)
    ]
    return weighted_mean(scaled, weights)


def aggregate_updates(
    updates: Sequence[Update],
    weights: Sequence[float],
    *,
    rule: str,
    trim_fraction: float = 0.1,
    clip_norm: float | None = None,
    steps: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Combine sites' updates with one of :data:`RULES`; the result is float64.

    Args:
        updates: the sites' updates (weights minus the global weights), same names and shapes.
        weights: one per update, e.g. its number of training samples; used by ``"mean"``,
            ``"clipped_mean"`` and ``"fednova"``, ignored by ``"median"`` and ``"trimmed_mean"``.
        rule: ``"mean"``, ``"median"``, ``"trimmed_mean"``, ``"clipped_mean"`` or ``"fednova"``.
        trim_fraction: β of ``"trimmed_mean"``.
        clip_norm: the L2 bound of ``"clipped_mean"``; required by that rule.
        steps: each update's local optimizer steps τ_i; required by ``"fednova"``, ignored otherwise.

    Raises:
        ValueError: on an unknown rule, a missing ``clip_norm`` or ``steps``, bad weights, steps or
            ``trim_fraction``, or updates that do not match.
    """
    if rule not in RULES:
        raise ValueError(f"Unknown aggregation rule {rule!r}; choose one of {', '.join(RULES)}.")
    if len(weights) != len(updates):
        raise ValueError(f"Got {len(updates)} updates but {len(weights)} weights.")
    if rule == "mean":
        return weighted_mean(updates, weights)
    if rule == "median":
        return coordinate_median(updates)
    if rule == "trimmed_mean":
        return trimmed_mean(updates, trim_fraction=trim_fraction)
    if rule == "fednova":
        if steps is None:
            raise ValueError("The fednova rule needs steps, each site's local optimizer steps this round.")
        return fednova(updates, weights, steps)
    if clip_norm is None:
        raise ValueError("The clipped_mean rule needs clip_norm, the L2 bound of each site's update.")
    return norm_clipped_mean(updates, weights, clip_norm=clip_norm)
