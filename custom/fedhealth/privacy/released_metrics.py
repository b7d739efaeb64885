"""Which metrics a site releases: a metric of a small cell is withheld (``None``) with a reason.

Applied once, where a site's replies are built (:class:`fedhealth.client.runner.SiteRunner`'s
round metrics and validation), so every task and client algorithm gets it. With ``m`` the site's
minimum cell (:mod:`fedhealth.privacy.small_cells`):

* a metric computed on fewer than ``m`` patients is withheld (accuracy and losses included);
* a class-wise metric (AUC, sensitivity, specificity, per-label AUC, per-finding rates, the
  operating point's sensitivity and specificity, the calibration's validation NLL) is withheld
  when the positive or the negative count it rests on is a small cell ``0 < c < m``. All of them
  go together, whichever class is small: sensitivity or specificity beside accuracy would give
  the small class's outcomes back. Accuracy itself mixes both classes and stays (with the class
  counts suppressed, its numerator cannot be split). A split with no patient of a class withholds
  nothing for it (the metric is undefined and says so already);
* the class counts travel suppressed (:func:`~fedhealth.privacy.small_cells.suppress_cells`, so
  one small class takes the other with it);
* every withheld value is named in the dict's ``suppressed`` list (``"auc: fewer than 5 positive
  patients"``), which carries the minimum, never a count or a value.

Round metrics follow their names: ``*_auc`` is class-wise on the round's split, ``*_accuracy`` and
``*_loss`` are on the round's split (a loss on the training rows when its name says ``train``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fedhealth import constants as C
from fedhealth.privacy.small_cells import small_class_reason, small_n_reason, suppress_cells
from fedhealth.training.site_metrics import METRICS

Pairs = Sequence[tuple[int | None, int | None]]


def _withheld(why: str) -> dict:
    return {"value": None, "lo": None, "hi": None, "reason": f"suppressed: {why}", C.M_SUPPRESSED: True}


def _note(out: dict, notes: list[str]) -> dict:
    if notes:
        out[C.M_SUPPRESSED] = notes
    return out


def _split_reason(n: int | None, pairs: Pairs, min_cell: int) -> str | None:
    return small_n_reason(n, min_cell) or small_class_reason(pairs, min_cell)


def release_intervals(intervals: Mapping, min_cell: int) -> dict:
    """:func:`~fedhealth.training.site_metrics.evaluate_with_intervals` as the site may send it."""
    out = dict(intervals)
    n, n_pos, n_neg = out.get("n"), out.get("n_pos"), out.get("n_neg")
    class_why = _split_reason(n, [(n_pos, n_neg)], min_cell)
    notes = []
    for name in METRICS:
        why = small_n_reason(n, min_cell) if name == C.M_ACCURACY else class_why
        if why and isinstance(out.get(name), Mapping):
            out[name] = _withheld(why)
            notes.append(f"{name}: {why}")
    if isinstance(n_pos, int) and isinstance(n_neg, int):
        out["n_pos"], out["n_neg"] = suppress_cells([n_pos, n_neg], min_cell)
        if None in (out["n_pos"], out["n_neg"]):
            notes.append(f"n_pos, n_neg: a class count below {min_cell}")
    return _note(out, notes)


def release_operating_point(op: Mapping, test: Mapping, min_cell: int) -> dict:
    """The operating-point report; ``test`` is the raw test intervals (their counts decide)."""
    out = dict(op)
    notes: list[str] = []
    val = dict(out.get("val") or {})
    vp, vn = val.get("n_pos"), val.get("n_neg")
    n_val = vp + vn if isinstance(vp, int) and isinstance(vn, int) else None
    val_why = _split_reason(n_val, [(vp, vn)], min_cell)
    if val_why:
        val.update(sensitivity=None, specificity=None)
        notes.append(f"val.sensitivity, val.specificity: {val_why} in the validation split")
        if out.get("reason"):  # a fallback's reason quotes the validation counts or its Youden J
            out["reason"] = f"suppressed: {val_why} in the validation split"
        calibration = dict(out.get("calibration") or {})
        if calibration:
            calibration.update(val_nll_before=None, val_nll_after=None)
            if calibration.get("reason"):
                calibration["reason"] = f"suppressed: {val_why} in the validation split"
            out["calibration"] = calibration
    if isinstance(vp, int) and isinstance(vn, int):
        val["n_pos"], val["n_neg"] = suppress_cells([vp, vn], min_cell)
    out["val"] = val
    test_why = _split_reason(test.get("n"), [(test.get("n_pos"), test.get("n_neg"))], min_cell)
    if test_why:
        for part in ("test", "test_at_0_5"):
            out[part] = {m: _withheld(test_why) for m in (out.get(part) or {})}
            notes.append(f"{part}: {test_why}")
        out["half_failed"] = None
    return _note(out, notes)


def release_validation(metrics: Mapping, *, pairs: Pairs, n: int, min_cell: int) -> dict:
    """A ``validate`` result as the site may send it.

    Args:
        metrics: the task's validation (NaN already ``None``).
        pairs: ``(positive, negative)`` counts of every question the test labels answer
            (:func:`~fedhealth.privacy.small_cells.class_counts`).
        n: test patients.
        min_cell: the site's minimum cell.
    """
    out = dict(metrics)
    notes: list[str] = []
    class_why = _split_reason(n, pairs, min_cell)
    for key, why in (
        (C.M_ACCURACY, small_n_reason(n, min_cell)),
        (C.M_AUC, class_why),
        (C.M_LOSS, small_n_reason(n, min_cell)),
    ):
        if why and out.get(key) is not None:
            out[key] = None
            notes.append(f"{key}: {why}")
    raw_findings = out.get(C.M_PER_FINDING) or {}
    if isinstance(out.get(C.M_PER_LABEL_AUC), Mapping):
        per_label = dict(out[C.M_PER_LABEL_AUC])
        for name, value in per_label.items():
            f = raw_findings.get(name)
            why = _split_reason(n, [(f["n_pos"], f["n_neg"])], min_cell) if f else class_why
            if why and value is not None:
                per_label[name] = None
                notes.append(f"{C.M_PER_LABEL_AUC}.{name}: {why}")
        out[C.M_PER_LABEL_AUC] = per_label
    raw_intervals = out.get(C.M_INTERVALS)
    if isinstance(out.get(C.M_OPERATING_POINT), Mapping) and isinstance(raw_intervals, Mapping):
        op = release_operating_point(out[C.M_OPERATING_POINT], raw_intervals, min_cell)
        out[C.M_OPERATING_POINT] = op
        notes += [f"{C.M_OPERATING_POINT}.{s}" for s in op.get(C.M_SUPPRESSED, [])]
    if isinstance(raw_intervals, Mapping):
        out[C.M_INTERVALS] = release_intervals(raw_intervals, min_cell)
        notes += [f"{C.M_INTERVALS}.{s}" for s in out[C.M_INTERVALS].get(C.M_SUPPRESSED, [])]
    if raw_findings:
        findings = {name: release_intervals(iv, min_cell) for name, iv in raw_findings.items()}
        out[C.M_PER_FINDING] = findings
        notes += [
            f"{C.M_PER_FINDING}.{f}.{s}" for f, iv in findings.items() for s in iv.get(C.M_SUPPRESSED, [])
        ]
    return _note(out, notes)


def release_round(metrics: Mapping, *, pairs: Pairs, n_split: int, n_train: int, min_cell: int) -> dict:
    """A train round's metrics as the site may send them (see the module doc for the name rule).

    Args:
        metrics: the round's metrics (NaN already ``None``).
        pairs: ``(positive, negative)`` counts of the round split's labels.
        n_split: patients in the round split (``eval_split``).
        n_train: training rows.
        min_cell: the site's minimum cell.
    """
    out = dict(metrics)
    notes = []
    class_why = _split_reason(n_split, pairs, min_cell)
    for key, value in metrics.items():
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if key.endswith(f"_{C.M_AUC}"):
            why = class_why
        elif key.endswith((f"_{C.M_LOSS}", f"_{C.M_ACCURACY}")):
            why = small_n_reason(n_train if "train" in key else n_split, min_cell)
        else:
            continue
        if why:
            out[key] = None
            notes.append(f"{key}: {why}")
    return _note(out, notes)
