"""A site's operating-point report: calibrate and choose on validation, then measure on test.

Order of work, all at the site: fit the calibration (if any) on the validation split; choose the
threshold on the calibrated validation probabilities; apply both, unchanged, to the test split and
compute the bootstrap intervals there at that threshold. Test labels are read only for these final
figures. Only aggregate numbers leave the site.

**The "0.5 would have failed" rule.** On the site's test split, the raw model's (uncalibrated)
sensitivity or specificity at 0.5 is below ``floor`` while at the chosen threshold both reach
``floor``. A metric undefined on test (one class present) never raises the flag.
"""

from __future__ import annotations

import numpy as np

from fedhealth.training.calibration import fit_calibration
from fedhealth.training.operating_point import OperatingPointConfig, choose_threshold
from fedhealth.training.site_metrics import DEFAULT_BOOTSTRAP, evaluate_with_intervals

HALF = 0.5
SENS_SPEC = ("sensitivity", "specificity")


def failed_at_half(at_half: dict, at_chosen: dict, floor: float) -> str | None:
    """The sentence saying how 0.5 fails where the chosen threshold holds, or None (see module doc).

    Args:
        at_half: :func:`evaluate_with_intervals` on test at 0.5 (raw probabilities).
        at_chosen: the same at the chosen threshold (calibrated probabilities).
        floor: the sensitivity and specificity a usable threshold must reach.
    """
    half = {m: at_half[m]["value"] for m in SENS_SPEC}
    chosen = {m: at_chosen[m]["value"] for m in SENS_SPEC}
    if any(v is None for v in (*half.values(), *chosen.values())):
        return None
    below = [m for m in SENS_SPEC if half[m] < floor]
    if not below or any(chosen[m] < floor for m in SENS_SPEC):
        return None
    failing = " and ".join(f"{m} {half[m]:.3f}" for m in below)
    return (
        f"at 0.5 its test {failing} would fall below the floor {floor:g}; the threshold "
        f"{at_chosen['threshold']:.3f} chosen on validation gives sensitivity {chosen['sensitivity']:.3f} "
        f"and specificity {chosen['specificity']:.3f}"
    )


def site_operating_point(
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    config: OperatingPointConfig,
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> tuple[dict, dict]:
    """The operating-point report and the test intervals at the chosen threshold.

    Args:
        val: validation ``(labels, probabilities)`` (binary view); the only split fitted on.
        test: test ``(labels, probabilities)``; measured, never fitted on.
        config: method, calibration and floor.
        n_bootstrap: bootstrap resamples of the test intervals.
        seed: seed of the resampling.

    Returns:
        ``(report, intervals)``: ``report`` holds ``method``, ``chosen_by``, ``threshold``, ``reason``,
        ``calibration``, ``val`` (sensitivity, specificity, counts), ``test`` and ``test_at_0_5``
        (sensitivity and specificity with intervals), ``floor`` and ``half_failed`` (the sentence
        or None); ``intervals`` is :func:`evaluate_with_intervals` on the calibrated test
        probabilities at the chosen threshold.
    """
    (val_y, val_p), (test_y, test_p) = val, test
    calibration = fit_calibration(val_y, val_p, config.calibration)
    val_cal = calibration.apply(val_p)
    choice = choose_threshold(val_y, val_cal, config)
    boot = {"n_bootstrap": n_bootstrap, "seed": seed}
    at_chosen = evaluate_with_intervals(test_y, calibration.apply(test_p), threshold=choice.threshold, **boot)
    at_half = evaluate_with_intervals(test_y, test_p, threshold=HALF, **boot)
    n_pos = int((np.asarray(val_y, dtype=float) > 0.5).sum())
    report = {
        "method": config.method,
        "chosen_by": choice.chosen_by,
        "threshold": choice.threshold,
        "reason": choice.reason,
        "calibration": calibration.as_dict(),
        "val": {
            "sensitivity": choice.sensitivity,
            "specificity": choice.specificity,
            "n_pos": n_pos,
            "n_neg": len(val_y) - n_pos,
        },
        "test": {m: at_chosen[m] for m in SENS_SPEC},
        "test_at_0_5": {m: at_half[m] for m in SENS_SPEC},
        "floor": config.floor,
        "half_failed": failed_at_half(at_half, at_chosen, config.floor),
    }
    return report, at_chosen
