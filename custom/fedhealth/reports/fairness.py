"""Fairness across sites: outlier flags, a per-site deployment gate and a loss-divergence warning.

Pure functions over the numbers the sites already send (``training.site_metrics``): no patient data,
no FLARE. The flag rule is the issue's "more than k standard deviations below the mean of the sites",
reported together with its arithmetic limit: with ``n`` values and the sample SD no value can lie
more than ``(n - 1) / sqrt(n)`` SD from the mean (Shiffler 1988, "Maximum Z scores and outliers",
The American Statistician 42(1):79-80), so with five sites or fewer a 2-SD rule can never fire.

A metric a site withheld as a small cell (:mod:`fedhealth.privacy.released_metrics`: ``value``
None, ``suppressed`` true) makes that site *not evaluable*: it is left out of the flags, and the
gate cannot clear it, so the job is not deployed on the strength of the other sites alone.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from fedhealth.constants import M_SUPPRESSED
from fedhealth.training.site_metrics import METRICS

GATE_RULE = "overall decision uses the minimum site's lower bound, never the mean"
DEPLOY, NO_DEPLOY = "DEPLOY", "DO NOT DEPLOY"
NOT_EVALUABLE = "not evaluable"  # a site whose gate metric it withheld as a small cell
_Z_TOL = 1e-9  # z must pass -k by more than rounding error to count as "more than k SD below"


def site_values(site_metrics: Mapping[str, Mapping], metric: str) -> tuple[dict, dict]:
    """One metric's point values per site and, where undefined, the site's reason.

    Args:
        site_metrics: site -> the dict of ``evaluate_with_intervals``.
        metric: one of ``site_metrics.METRICS``.

    Returns:
        ``(values, reasons)`` ready for :func:`flag_sites`.
    """
    values = {site: m.get(metric, {}).get("value") for site, m in site_metrics.items()}
    reasons = {site: m.get(metric, {}).get("reason") for site, m in site_metrics.items()}
    return values, {site: r for site, r in reasons.items() if r}


def _valued(values: Mapping[str, float | None], reasons: Mapping[str, str]) -> tuple[dict, dict]:
    kept, excluded = {}, {}
    for site, v in values.items():
        if v is None or not math.isfinite(v):
            got = "no value reported" if v is None else f"value {v}"
            excluded[site] = reasons.get(site) or f"metric undefined at this site ({got})"
        else:
            kept[site] = float(v)
    return kept, excluded


def _flag_notes(n: int, sd: float | None, max_z: float | None, k: float) -> tuple[bool, list[str]]:
    if n < 3:
        has = "No site has" if n == 0 else f"Only {n} site{'s have' if n > 1 else ' has'}"
        return False, [f"{has} a value; a {k:g}-SD flag needs at least 3 sites, so no site is flagged."]
    notes = []
    if sd == 0:
        notes.append(f"All {n} sites have the same value, so the SD is 0 and no site is flagged.")
    if max_z is not None and max_z <= k:
        notes.append(
            f"With {n} sites no site can lie more than (n-1)/sqrt(n) = {max_z:.2f} SD below the mean, "
            f"so the {k:g}-SD rule cannot flag any site here; an unflagged site has not passed a test, "
            "read the gap between the best and worst site instead."
        )
    return True, notes


def flag_sites(
    values: Mapping[str, float | None], *, k: float = 2.0, reasons: Mapping[str, str] | None = None
) -> dict:
    """Flag the sites whose metric lies more than ``k`` sample SDs below the mean of the sites.

    Args:
        values: site -> metric value; None (or NaN) means undefined there and excludes the site.
        k: how many SDs below the mean a site must lie, strictly, to be flagged.
        reasons: optional site -> why its value is undefined (e.g. from :func:`site_values`).

    Returns:
        ``{"computed", "reason", "n_sites", "mean", "sd", "min", "min_site", "max", "max_site", "gap",
        "k", "max_possible_z", "sites": {site: {"value", "z", "flagged", "excluded"}}}``. ``sd`` is the
        sample SD (ddof=1); ``reason`` explains a flag that is not computed or cannot fire.
    """
    kept, excluded = _valued(values, reasons or {})
    n = len(kept)
    mean = statistics.mean(kept.values()) if n else None
    sd = statistics.stdev(kept.values()) if n > 1 else None
    max_z = (n - 1) / math.sqrt(n) if n else None
    computed, notes = _flag_notes(n, sd, max_z, k)
    lo_site, hi_site = (min(kept, key=kept.get), max(kept, key=kept.get)) if n else (None, None)

    def entry(site: str) -> dict:
        if site in excluded:
            return {"value": None, "z": None, "flagged": False, "excluded": excluded[site]}
        z = (0.0 if sd == 0 else (kept[site] - mean) / sd) if computed else None
        return {"value": kept[site], "z": z, "flagged": z is not None and z < -k - _Z_TOL, "excluded": None}

    out = {"computed": computed, "reason": " ".join(notes) or None, "n_sites": n, "mean": mean, "sd": sd}
    out |= {"min": kept.get(lo_site), "min_site": lo_site, "max": kept.get(hi_site), "max_site": hi_site}
    out["gap"] = kept[hi_site] - kept[lo_site] if n else None
    return out | {"k": k, "max_possible_z": max_z, "sites": {site: entry(site) for site in values}}


# Patients of each class a metric needs before its interval means anything: the percentile
# bootstrap collapses with very few patients of a class (one negative patient: every resample that
# contains it gives the same AUC, so the "interval" is a point) and under-covers below ~10.
_CLASSES_NEEDED = {
    "auc": ("n_pos", "n_neg"),
    "sensitivity": ("n_pos",),
    "specificity": ("n_neg",),
    "accuracy": ("n_pos", "n_neg"),
}
_CLASS_WORDS = {"n_pos": "positive", "n_neg": "negative"}


def _too_few(m: Mapping, metric: str, min_per_class: int) -> str | None:
    for key in _CLASSES_NEEDED[metric]:
        count = m.get(key)
        if count is not None and count < min_per_class:
            return (
                f"only {count} {_CLASS_WORDS[key]} patient(s) in the site's test split; the {metric} "
                f"interval needs at least {min_per_class} of each class it depends on to be trusted, so "
                f"the site cannot be cleared"
            )
    return None


def _gate_site(m: Mapping, metric: str, threshold: float, confidence: float, min_per_class: int) -> dict:
    entry = m.get(metric) or {}
    value, lo = entry.get("value"), entry.get("lo")
    pct = f"{confidence:.0%}"
    if entry.get(M_SUPPRESSED):
        why = str(entry.get("reason") or "").removeprefix("suppressed: ") or "a small cell"
        reason = f"{NOT_EVALUABLE}: the site withheld {metric} ({why}), so it cannot be cleared"
        return {
            "decision": NO_DEPLOY,
            "lower_bound": None,
            "value": None,
            "reason": reason,
            M_SUPPRESSED: True,
        }
    too_few = _too_few(m, metric, min_per_class) if value is not None else None
    if too_few:
        return {"decision": NO_DEPLOY, "lower_bound": lo, "value": value, "reason": too_few, "too_few": True}
    if value is None:
        reason = entry.get("reason") or f"{metric} was not reported by this site"
    elif lo is None:
        reason = f"{metric} = {value:.3f} has no confidence interval (no usable bootstrap resample)"
    elif lo >= threshold:
        reason = f"the {pct} lower bound {lo:.3f} of {metric} clears the threshold {threshold:g}"
    elif value >= threshold:
        reason = (
            f"{metric} = {value:.3f} is above {threshold:g} but its {pct} interval does not clear it "
            f"(lower bound {lo:.3f}, n = {m.get('n')}): sample too small or model too weak"
        )
    else:
        reason = f"{metric} = {value:.3f} is below the threshold {threshold:g} (lower bound {lo:.3f})"
    decision = DEPLOY if lo is not None and value is not None and lo >= threshold else NO_DEPLOY
    return {"decision": decision, "lower_bound": lo, "value": value, "reason": reason}


def _confidence(site_metrics: Mapping[str, Mapping]) -> float:
    levels = {m.get("confidence") for m in site_metrics.values()}
    if len(levels) != 1 or None in levels:
        raise ValueError(
            f"All sites must report intervals at one confidence level, got {sorted(map(str, levels))}."
        )
    return levels.pop()


def deployment_gate(
    site_metrics: Mapping[str, Mapping], *, metric: str, threshold: float, min_per_class: int = 10
) -> dict:
    """Deploy only if every site's lower confidence bound of ``metric`` reaches ``threshold``.

    Args:
        site_metrics: site -> the dict of ``evaluate_with_intervals`` (percentile bootstrap intervals,
            Efron & Tibshirani 1993).
        metric: one of ``site_metrics.METRICS``.
        threshold: the minimum acceptable value, in (0, 1).
        min_per_class: a site with fewer patients than this of a class the metric depends on is
            not cleared, whatever its interval says (the bootstrap is unreliable there).

    Returns:
        ``{"metric", "threshold", "confidence", "decision", "deciding_site", "sites", "rule"}`` with
        ``sites[site] = {"decision", "lower_bound", "value", "reason"}``. ``deciding_site`` is the first
        site without a lower bound, else the site with the minimum lower bound.

    Raises:
        ValueError: on an unknown metric, a threshold outside (0, 1), no sites or mixed confidence levels.
    """
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; the gate accepts one of {', '.join(METRICS)}.")
    if not 0 < threshold < 1:
        raise ValueError(f"The threshold must lie strictly between 0 and 1, got {threshold}.")
    if not site_metrics:
        raise ValueError("The gate needs at least one site's metrics, got none.")
    confidence = _confidence(site_metrics)
    sites = {s: _gate_site(m, metric, threshold, confidence, min_per_class) for s, m in site_metrics.items()}
    # A site that cannot be judged (no bound, or too few patients of a class) decides first.
    undefined = [s for s, g in sites.items() if g["lower_bound"] is None or g.get("too_few")]
    deciding = undefined[0] if undefined else min(sites, key=lambda s: sites[s]["lower_bound"])
    overall = DEPLOY if all(g["decision"] == DEPLOY for g in sites.values()) else NO_DEPLOY
    return {
        "metric": metric,
        "threshold": threshold,
        "confidence": confidence,
        "decision": overall,
        "deciding_site": deciding,
        "sites": sites,
        "rule": GATE_RULE,
        "min_per_class": min_per_class,
    }


def _finite(row: Mapping[str, float | None]) -> dict[str, float]:
    return {s: v for s, v in row.items() if v is not None and math.isfinite(v)}


def _spread(losses: Mapping[str, float]) -> float | None:
    finite = _finite(losses).values()
    return max(finite) - min(finite) if len(finite) > 1 else None


def _mover(history: Sequence[Mapping[str, float]], start: int, end: int) -> tuple[str, float, float] | None:
    def dev(r: int) -> dict[str, float]:
        med = statistics.median(_finite(history[r]).values())
        return {s: abs(v - med) for s, v in _finite(history[r]).items()}

    before, after = dev(start), dev(end)
    common = [s for s in after if s in before]
    if len(common) < 3:  # with two sites both sit equally far from their median
        return None
    site = max(common, key=lambda s: after[s] - before[s])
    return site, before[site], after[site]


def loss_divergence(
    history: Sequence[Mapping[str, float]], *, min_rounds: int = 4, growth: float = 1.5, window: int = 3
) -> dict:
    """Warn when the sites' training losses drift apart over rounds (then raise FedProx mu or cut epochs).

    ``spread_r`` is max - min of the losses reported in round ``r`` (0-based, FLARE's round number);
    sites missing in a round are skipped, rounds with fewer than two finite losses have no spread.
    The losses are diverging when (1) at least ``min_rounds`` rounds have a spread, (2) the last
    spread is at least ``growth`` times the smallest earlier spread (its round is ``since_round``),
    and (3) over the last ``window`` steps between rounds with a spread, the spread is higher than
    ``window`` steps ago and rose in every step but at most one (a refinement of "rose in each of the
    last rounds": one noisy dip does not hide a drift, a one-round spike is not a drift). The advice
    follows FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks").

    Returns:
        ``{"diverging", "since_round", "spread_min", "spread_last", "ratio", "spreads", "message",
        "reason"}``; ``spreads`` has one entry per round (None without a spread), ``ratio`` is None
        when the smallest spread is 0, ``reason`` says why no warning is raised. With three or more
        sites ``message`` names the site whose ``|loss - median|`` grew most since ``since_round``.
    """
    spreads = [_spread(row) for row in history]
    rounds = [r for r, s in enumerate(spreads) if s is not None]
    out = dict.fromkeys(("since_round", "spread_min", "spread_last", "ratio", "message", "reason"))
    out |= {"diverging": False, "spreads": spreads}
    needed = max(min_rounds, window + 1, 2)
    if len(rounds) < needed:
        out["reason"] = f"Only {len(rounds)} rounds have a loss spread; at least {needed} are needed."
        return out
    since = min(reversed(rounds[:-1]), key=lambda r: spreads[r])
    s_min, s_last = spreads[since], spreads[rounds[-1]]
    out |= {"spread_min": s_min, "spread_last": s_last, "ratio": s_last / s_min if s_min > 0 else None}
    tail = [spreads[r] for r in rounds[-window - 1 :]]
    rises = sum(b > a for a, b in zip(tail, tail[1:], strict=False))
    grew = s_last >= growth * s_min and s_last > s_min
    if not (grew and tail[-1] > tail[0] and rises >= max(1, window - 1)):
        out["reason"] = f"No sustained growth: the spread is {s_last:.3g}, the smallest before {s_min:.3g}."
        return out
    out |= {"diverging": True, "since_round": since}
    out["message"] = _divergence_message(history, out, rounds[-1])
    return out


def _divergence_message(history: Sequence[Mapping[str, float]], out: dict, last: int) -> str:
    ratio, since = out["ratio"], out["since_round"]
    grew = f"{ratio:.1f}x" if ratio is not None else "from 0"
    msg = f"Sites' training losses are diverging: their spread grew {grew} "
    msg += f"({out['spread_min']:.3g} → {out['spread_last']:.3g}) since round {since}"
    mover = _mover(history, since, last)
    if mover:
        msg += f"; {mover[0]} moved away most (|loss - median| {mover[1]:.3g} → {mover[2]:.3g})"
    return msg + "; raise FedProx mu or lower the local epochs."
