"""The deployment gate of a multi-label (or multi-class) job: every finding at every site.

Each site's validate result carries, per finding, the intervals it computed on its own test split
(``per_finding``: finding -> :func:`~fedhealth.training.site_metrics.evaluate_with_intervals`; a
multi-class job's classes one-vs-rest). The job's ``RunRecorder`` may set a threshold per finding
(``finding_thresholds``); a finding it does not name gets the job's ``threshold``. The gate runs
:func:`~fedhealth.reports.fairness.deployment_gate` once per finding and deploys only when every
finding clears its threshold at every site: the decision is the minimum over findings and sites of
the lower bound against that finding's threshold. A finding a site cannot judge (one class present,
too few positive patients, not reported) cannot clear that site. Aggregates only, no FLARE.
"""

from __future__ import annotations

from collections.abc import Mapping

from fedhealth.constants import M_INTERVALS, M_PER_FINDING
from fedhealth.reports.fairness import DEPLOY, NO_DEPLOY, deployment_gate

FINDING_GATE_RULE = (
    "overall decision uses the minimum over findings and sites of the lower bound against each "
    "finding's threshold, never a mean"
)
NOT_REPORTED = "the site reported no intervals for this finding"


def site_findings(cross: Mapping[str, Mapping], model: str | None) -> dict[str, dict]:
    """Each validating site's per-finding intervals of ``model``; empty when no site sent any.

    A site that sent the overall intervals but no per-finding ones (an older site) is kept with an
    empty dict, so the gate cannot clear it.
    """
    if model is None:
        return {}
    results = {site: models[model] for site, models in cross.items() if model in models}
    if not any(M_PER_FINDING in r for r in results.values()):
        return {}
    return {
        site: dict(r.get(M_PER_FINDING) or {})
        for site, r in results.items()
        if M_PER_FINDING in r or M_INTERVALS in r
    }


def _findings(per_site: Mapping[str, Mapping[str, Mapping]]) -> list[str]:
    names: list[str] = []
    for findings in per_site.values():
        names += [f for f in findings if f not in names]
    return names


def _confidence(per_site: Mapping[str, Mapping[str, Mapping]]) -> float | None:
    levels = {m.get("confidence") for findings in per_site.values() for m in findings.values()}
    return levels.pop() if len(levels) == 1 else None  # mixed levels: deployment_gate names them


def check_finding_thresholds(given: Mapping[str, float]) -> dict[str, float]:
    """``finding_thresholds`` as floats; a name that is not a string or a value outside (0, 1) is an error."""
    if not isinstance(given, Mapping):
        kind = type(given).__name__
        raise ValueError(f"finding_thresholds must map finding names to thresholds, got a {kind}.")
    out = {}
    for name, value in given.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"finding_thresholds: finding names must be non-empty strings, got {name!r}.")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ValueError(
                f"finding_thresholds[{name!r}] must be a number strictly between 0 and 1, got {value!r}."
            )
        out[name] = float(value)
    return out


def finding_gate(
    per_site: Mapping[str, Mapping[str, Mapping]],
    *,
    metric: str,
    threshold: float,
    finding_thresholds: Mapping[str, float] | None = None,
    min_per_class: int = 10,
) -> dict:
    """Deploy only if, for every finding, every site's lower bound of ``metric`` clears its threshold.

    Args:
        per_site: site -> finding -> the dict of ``evaluate_with_intervals`` at that site.
        metric: one of ``site_metrics.METRICS`` (the job's ``primary_metric``).
        threshold: the threshold of every finding that ``finding_thresholds`` does not name.
        finding_thresholds: finding -> its own threshold, each in (0, 1).
        min_per_class: as in :func:`~fedhealth.reports.fairness.deployment_gate`, per finding.

    Returns:
        ``{"metric", "threshold", "thresholds", "confidence", "decision", "findings", "sites",
        "failing", "unknown_thresholds", "rule"}``: ``findings[f]`` is ``deployment_gate``'s result
        for finding ``f`` (``hi`` added to each site), ``sites[s]`` the site's decision over all
        findings, ``failing`` one ``{"finding", "site", "reason"}`` per cell that did not clear.
        A threshold named for a finding no site reported is listed in ``unknown_thresholds`` and
        fails the gate: a misspelt finding must not fall back silently to the default threshold.

    Raises:
        ValueError: on no sites, a bad threshold, an unknown metric or mixed confidence levels.
    """
    if not per_site:
        raise ValueError("The per-finding gate needs at least one site's results, got none.")
    given = check_finding_thresholds(finding_thresholds or {})
    names = _findings(per_site)
    confidence = _confidence(per_site)
    thresholds = {f: given.get(f, threshold) for f in names}
    findings = {}
    for f in names:
        blank = {"value": None, "lo": None, "hi": None, "reason": NOT_REPORTED}
        missing = {"confidence": confidence, metric: blank}
        cells = {site: per_site[site].get(f) or missing for site in per_site}
        gate = deployment_gate(cells, metric=metric, threshold=thresholds[f], min_per_class=min_per_class)
        for site, entry in gate["sites"].items():
            entry["hi"] = (cells[site].get(metric) or {}).get("hi")
        findings[f] = gate
    failing = [
        {"finding": f, "site": site, "reason": entry["reason"]}
        for f, gate in findings.items()
        for site, entry in gate["sites"].items()
        if entry["decision"] != DEPLOY
    ]
    unknown = sorted(set(given) - set(names))
    failed_sites = {c["site"] for c in failing}
    sites = {site: NO_DEPLOY if site in failed_sites or not names else DEPLOY for site in per_site}
    ok = bool(names) and not failing and not unknown
    return {
        "metric": metric,
        "threshold": threshold,
        "thresholds": thresholds,
        "confidence": confidence,
        "decision": DEPLOY if ok else NO_DEPLOY,
        "findings": findings,
        "sites": sites,
        "failing": failing,
        "unknown_thresholds": unknown,
        "rule": FINDING_GATE_RULE,
        "min_per_class": min_per_class,
    }
