"""Fairness report: the k-SD site flag and its limits, the lower-bound deployment gate, loss divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedhealth.reports.fairness import (
    GATE_RULE,
    deployment_gate,
    flag_sites,
    loss_divergence,
    site_values,
)
from fedhealth.training.site_metrics import evaluate_with_intervals

# (case, site values, computed, flagged sites, reason fragment or None, max_possible_z)
FLAG_CASES = [
    ("seven_one_low", [0.85, 0.84, 0.86, 0.83, 0.85, 0.84, 0.60], True, {"s6"}, None, 6 / math.sqrt(7)),
    ("six_all_close", [0.85, 0.84, 0.86, 0.83, 0.85, 0.80], True, set(), None, 5 / math.sqrt(6)),
    ("four_one_far", [0.90, 0.80, 0.85, 0.20], True, set(), "(n-1)/sqrt(n) = 1.50 SD", 1.5),
    ("five_one_far", [0.90, 0.90, 0.90, 0.90, 0.10], True, set(), "= 1.79 SD", 4 / math.sqrt(5)),
    (
        "two_sites",
        [0.90, 0.30],
        False,
        set(),
        "Only 2 sites have a value; a 2-SD flag needs",
        1 / math.sqrt(2),
    ),
    ("ties", [0.7] * 7, True, set(), "the SD is 0 and no site is flagged", 6 / math.sqrt(7)),
    # z is -2 exactly (-2.0000000000000004 in floats): "more than 2 SD below" does not hold.
    ("exactly_k", [0.60, 0.80, 0.85, 0.85, 0.85, 0.85], True, set(), None, 5 / math.sqrt(6)),
    ("just_past_k", [0.59, 0.80, 0.85, 0.85, 0.85, 0.85], True, {"s0"}, None, 5 / math.sqrt(6)),
]

# (case, per-site (value, lo, reason), threshold, decision, deciding site)
GATE_CASES = [
    ("all_clear", [(0.90, 0.82, None), (0.88, 0.80, None), (0.86, 0.76, None)], 0.75, "DEPLOY", "s2"),
    # mean lower bound 0.80 clears 0.75, the worst site (0.68) does not
    (
        "one_lo_below",
        [(0.95, 0.90, None), (0.93, 0.82, None), (0.85, 0.68, None)],
        0.75,
        "DO NOT DEPLOY",
        "s2",
    ),
    (
        "undefined",
        [(0.90, 0.82, None), (None, None, "AUC undefined: one class"), (0.85, 0.10, None)],
        0.75,
        "DO NOT DEPLOY",
        "s1",
    ),
    ("point_below", [(0.90, 0.82, None), (0.70, 0.60, None)], 0.75, "DO NOT DEPLOY", "s1"),
    ("lo_equals_threshold", [(0.90, 0.75, None)], 0.75, "DEPLOY", "s0"),
]

# (case, bad kwargs, message fragment)
GATE_ERRORS = [
    ("metric", {"metric": "f1", "threshold": 0.7}, "Unknown metric 'f1'"),
    ("threshold_zero", {"metric": "auc", "threshold": 0.0}, "strictly between 0 and 1, got 0.0"),
    ("threshold_one", {"metric": "auc", "threshold": 1.0}, "strictly between 0 and 1, got 1.0"),
]

# (case, spread per round, diverging, since_round, ratio)
SPREAD_CASES = [
    ("diverging", [0.10, 0.06, 0.041, 0.05, 0.07, 0.094], True, 2, 0.094 / 0.041),
    ("noisy_dip", [0.05, 0.04, 0.06, 0.055, 0.07, 0.09], True, 1, 0.09 / 0.04),
    ("from_zero", [0.0, 0.0, 0.0, 0.01, 0.02, 0.03], True, 2, None),
    ("converging", [0.10, 0.08, 0.06, 0.05, 0.04, 0.03], False, None, 0.03 / 0.04),
    ("one_round_spike", [0.05, 0.05, 0.05, 0.05, 0.05, 0.10], False, None, 2.0),
    ("slow_drift", [0.050, 0.052, 0.054, 0.056, 0.058, 0.060], False, None, 0.060 / 0.050),
]


def _history(spreads: list[float]) -> list[dict[str, float]]:
    """Four sites; a, b, c stay together, d drifts so that max - min equals the spread."""
    rows = []
    for r, spread in enumerate(spreads):
        base = 0.7 - 0.05 * r
        rows.append({"a": base, "b": base + spread / 4, "c": base + spread / 2, "d": base + spread})
    return rows


def _site(value: float | None, lo: float | None, reason: str | None, metric: str = "auc") -> dict:
    hi = None if value is None else min(1.0, value + 0.05)
    return {"n": 120, "confidence": 0.95, metric: {"value": value, "lo": lo, "hi": hi, "reason": reason}}


@pytest.mark.parametrize(("case", "values", "computed", "flagged", "reason", "max_z"), FLAG_CASES)
def test_flag_sites(case, values, computed, flagged, reason, max_z):
    out = flag_sites({f"s{i}": v for i, v in enumerate(values)})
    assert out["computed"] is computed
    assert {s for s, e in out["sites"].items() if e["flagged"]} == flagged
    assert out["max_possible_z"] == pytest.approx(max_z)
    assert out["n_sites"] == len(values)
    assert out["mean"] == pytest.approx(np.mean(values))
    assert out["sd"] == pytest.approx(np.std(values, ddof=1))
    assert out["gap"] == pytest.approx(max(values) - min(values))
    assert out["min"] == min(values) and out["max"] == max(values)
    if reason is None:
        assert out["reason"] is None
    else:
        assert reason in out["reason"]
    if computed and out["sd"] > 0:
        z = (np.array(values) - np.mean(values)) / np.std(values, ddof=1)
        assert [out["sites"][f"s{i}"]["z"] for i in range(len(values))] == pytest.approx(list(z))
        assert min(z) >= -max_z - 1e-12  # Shiffler's bound holds on every case
    if not computed:
        assert all(e["z"] is None for e in out["sites"].values())


def test_flag_sites_low_site_is_named_with_its_z():
    out = flag_sites({f"s{i}": v for i, v in enumerate(FLAG_CASES[0][1])})
    assert out["min_site"] == "s6" and out["max_site"] == "s2"
    assert out["sites"]["s6"]["z"] == pytest.approx(-2.2558, abs=1e-4)
    assert out["sites"]["s6"]["z"] < -2


def test_flag_sites_ties_give_zero_z():
    out = flag_sites({f"s{i}": 0.7 for i in range(7)})
    assert out["sd"] == 0.0
    assert [e["z"] for e in out["sites"].values()] == [0.0] * 7


def test_flag_sites_excludes_one_class_site_with_its_reason():
    rng = np.random.default_rng(3)
    metrics = {}
    for i in range(6):
        labels = rng.integers(0, 2, 60).astype(float)
        metrics[f"s{i}"] = evaluate_with_intervals(labels, rng.random(60), n_bootstrap=50)
    metrics["one_class"] = evaluate_with_intervals(np.zeros(20), rng.random(20), n_bootstrap=50)
    values, reasons = site_values(metrics, "auc")
    out = flag_sites(values, reasons=reasons)
    excluded = out["sites"]["one_class"]
    assert excluded["value"] is None and excluded["flagged"] is False
    assert "one class" in excluded["excluded"]
    assert out["n_sites"] == 6 and out["computed"] is True
    assert list(out["sites"]) == [*[f"s{i}" for i in range(6)], "one_class"]


def test_flag_sites_excluded_sites_do_not_count():
    out = flag_sites({"a": 0.8, "b": None, "c": float("nan"), "d": 0.7})
    assert out["computed"] is False and out["n_sites"] == 2
    assert out["sites"]["b"]["excluded"] == "metric undefined at this site (no value reported)"
    assert out["sites"]["c"]["excluded"] == "metric undefined at this site (value nan)"
    assert out["reason"].startswith("Only 2 sites have a value")


@pytest.mark.parametrize(("case", "sites", "threshold", "decision", "deciding"), GATE_CASES)
def test_deployment_gate(case, sites, threshold, decision, deciding):
    metrics = {f"s{i}": _site(*s) for i, s in enumerate(sites)}
    out = deployment_gate(metrics, metric="auc", threshold=threshold)
    assert out["decision"] == decision
    assert out["deciding_site"] == deciding
    assert out["rule"] == GATE_RULE and out["confidence"] == 0.95
    assert out["metric"] == "auc" and out["threshold"] == threshold
    for name, (value, lo, _) in zip(metrics, sites, strict=True):
        site = out["sites"][name]
        assert site["value"] == value and site["lower_bound"] == lo
        expected = "DEPLOY" if lo is not None and lo >= threshold else "DO NOT DEPLOY"
        assert site["decision"] == expected


def test_gate_decides_on_minimum_lower_bound_not_mean():
    sites = GATE_CASES[1][1]
    assert np.mean([lo for _, lo, _ in sites]) > 0.75
    out = deployment_gate({f"s{i}": _site(*s) for i, s in enumerate(sites)}, metric="auc", threshold=0.75)
    reason = out["sites"]["s2"]["reason"]
    assert "0.850 is above 0.75 but its 95% interval does not clear it" in reason
    assert "lower bound 0.680, n = 120" in reason and "sample too small or model too weak" in reason


def test_gate_undefined_metric_carries_site_reason():
    sites = GATE_CASES[2][1]
    out = deployment_gate({f"s{i}": _site(*s) for i, s in enumerate(sites)}, metric="auc", threshold=0.75)
    assert out["sites"]["s1"] == {
        "decision": "DO NOT DEPLOY",
        "lower_bound": None,
        "value": None,
        "reason": "AUC undefined: one class",
    }


def test_gate_on_real_intervals_one_class_site():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300).astype(float)
    good = evaluate_with_intervals(labels, np.clip(labels * 0.6 + rng.random(300) * 0.4, 0, 1))
    one_class = evaluate_with_intervals(np.ones(30), rng.random(30))
    out = deployment_gate({"good": good, "one_class": one_class}, metric="auc", threshold=0.7)
    assert out["sites"]["good"]["decision"] == "DEPLOY"
    assert out["decision"] == "DO NOT DEPLOY" and out["deciding_site"] == "one_class"
    assert "one class" in out["sites"]["one_class"]["reason"]


@pytest.mark.parametrize(("case", "kwargs", "message"), GATE_ERRORS)
def test_gate_rejects_bad_settings(case, kwargs, message):
    with pytest.raises(ValueError, match=message):
        deployment_gate({"s0": _site(0.9, 0.8, None)}, **kwargs)


def test_gate_rejects_no_sites_and_mixed_confidence():
    with pytest.raises(ValueError, match="at least one site"):
        deployment_gate({}, metric="auc", threshold=0.7)
    mixed = {"a": _site(0.9, 0.8, None), "b": {**_site(0.9, 0.8, None), "confidence": 0.9}}
    with pytest.raises(ValueError, match="one confidence level"):
        deployment_gate(mixed, metric="auc", threshold=0.7)


@pytest.mark.parametrize(("case", "spreads", "diverging", "since", "ratio"), SPREAD_CASES)
def test_loss_divergence(case, spreads, diverging, since, ratio):
    out = loss_divergence(_history(spreads))
    assert out["diverging"] is diverging
    assert out["since_round"] == since
    assert out["spreads"] == pytest.approx(spreads, abs=1e-12)
    assert out["spread_last"] == pytest.approx(spreads[-1])
    assert out["ratio"] == (None if ratio is None else pytest.approx(ratio))
    if diverging:
        assert out["message"].startswith("Sites' training losses are diverging")
        assert f"since round {since}" in out["message"]
        assert "d moved away most" in out["message"]
        assert out["message"].endswith("raise FedProx mu or lower the local epochs.")
        assert out["reason"] is None
    else:
        assert out["message"] is None and out["reason"].startswith("No sustained growth")


def test_loss_divergence_message_numbers():
    out = loss_divergence(_history(SPREAD_CASES[0][1]))
    assert "spread grew 2.3x (0.041 → 0.094) since round 2" in out["message"]
    # d sits at base + spread, the median of the four at base + 3/8 spread: 5/8 of the spread away
    assert "|loss - median| 0.0256 → 0.0587" in out["message"]


def test_loss_divergence_from_zero_says_so():
    out = loss_divergence(_history(SPREAD_CASES[2][1]))
    assert "spread grew from 0 (0 → 0.03)" in out["message"]


def test_loss_divergence_too_few_rounds():
    out = loss_divergence(_history([0.01, 0.05, 0.2]))
    assert out["diverging"] is False and out["since_round"] is None and out["ratio"] is None
    assert out["reason"] == "Only 3 rounds have a loss spread; at least 4 are needed."
    assert out["spreads"] == pytest.approx([0.01, 0.05, 0.2])


def test_loss_divergence_sites_missing_in_some_rounds():
    history = _history([0.10, 0.06, 0.04, 0.05, 0.05, 0.07, 0.094])
    del history[1]["a"]  # spread of round 1 is now max - min of b, c, d
    history[4] = {"c": 0.5}  # one site only: no spread that round
    del history[6]["b"]
    out = loss_divergence(history)
    assert out["spreads"][4] is None
    assert out["spreads"][1] == pytest.approx(0.06 * 3 / 4)
    assert out["diverging"] is True and out["since_round"] == 2
    assert out["ratio"] == pytest.approx(0.094 / 0.04)
    # too few rounds once the missing ones are skipped
    sparse = [{"a": 0.5, "b": 0.6}, {"a": 0.4}, {}, {"a": 0.3, "b": 0.9}, {"c": 0.2}]
    out = loss_divergence(sparse)
    assert out["spreads"] == [pytest.approx(0.1), None, None, pytest.approx(0.6), None]
    assert out["diverging"] is False and "Only 2 rounds" in out["reason"]


def test_loss_divergence_two_sites_names_no_mover():
    history = [{"a": 1.0, "b": 1.0 + s} for s in (0.1, 0.1, 0.05, 0.2, 0.4, 0.6)]
    out = loss_divergence(history)
    assert out["diverging"] is True and out["since_round"] == 2
    assert "spread grew 12.0x (0.05 → 0.6) since round 2; raise FedProx mu" in out["message"]
    assert "moved away" not in out["message"]
