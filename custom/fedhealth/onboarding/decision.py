"""validate-site's decision for any kind of job: split, score with intervals, judge, fine-tune, judge again.

A job kind (a heart or tabular network, a tree ensemble, an image model) hands the decision a
:class:`SiteCase`: its model, the site's inputs and labels, the yes/no question(s) the gate asks
(one for binary and multi-class tasks, one per finding for a multi-label task), how to score and
how to fine-tune. The decision itself is the same for all:

1. split the labelled rows, stratified and seeded, into a fine-tuning part and an evaluation part
   (``holdout_fraction``); every reported number comes from the evaluation part only;
2. refuse to judge when the evaluation part is too small for any model to show the threshold
   (:mod:`fedhealth.onboarding.sample_size`), for any question;
3. deploy the global model when the lower bound of its 95% bootstrap interval (Efron & Tibshirani
   1993) reaches the threshold (for several findings: the lowest of their lower bounds); otherwise
   fine-tune a copy on the fine-tuning part and judge that copy on the same evaluation part.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedhealth.onboarding.artifacts import split_rows
from fedhealth.onboarding.sample_size import SUPPORTED_METRICS, check_sample
from fedhealth.training.site_metrics import evaluate_with_intervals

DECISION_INSUFFICIENT = "INSUFFICIENT DATA"
DECISION_DEPLOY = "FIT: DEPLOY"
DECISION_DEPLOY_FINETUNED = "FIT AFTER FINE-TUNING: DEPLOY THE FINE-TUNED MODEL"
DECISION_NOT_FIT = "NOT FIT"
CONFIDENCE = 0.95


def save_torch(model: torch.nn.Module, path: Path) -> None:
    """A fine-tuned network in the job's format (``{"model": state_dict}``)."""
    torch.save({"model": model.state_dict()}, path)


@dataclass(frozen=True)
class SiteCase:
    """What the decision needs from a job kind.

    Args:
        model: the global model.
        x: the site's model inputs, one row (or image) per labelled case.
        y: the labels the job trains on (fine-tuning), first axis the cases.
        targets: ``(n, Q)`` 0/1, the yes/no question(s) the gate asks of each case.
        scores: ``scores(model, x)`` gives ``(n, Q)`` (or ``(n,)`` when Q is 1) probabilities.
        fine_tune: ``fine_tune(model, x, y, seed)`` gives a tuned copy and its settings (for the report).
        files: how the report names what was read.
        questions: the names of the Q questions when there are several (findings); empty when one.
        strata: what the split stratifies on (default: the first question's answer, or any finding).
        extra: more result keys (the data report, notes, the unit counted).
        save: writes a fine-tuned model (default: :func:`save_torch`).
    """

    model: Any
    x: np.ndarray
    y: np.ndarray
    targets: np.ndarray
    scores: Callable[[Any, np.ndarray], np.ndarray]
    fine_tune: Callable[[Any, np.ndarray, np.ndarray, int], tuple[Any, dict]]
    files: list[str]
    questions: tuple[str, ...] = ()
    strata: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    save: Callable[[Any, Path], None] = save_torch

    def __post_init__(self) -> None:
        q = self.targets.shape[1] if self.targets.ndim == 2 else 0
        if q < 1 or len(self.targets) != len(self.y) or (q > 1 and len(self.questions) != q):
            raise ValueError(
                f"targets must be (n, Q) with n = {len(self.y)} and one name per question when Q > 1, "
                f"got shape {self.targets.shape} and {len(self.questions)} name(s)."
            )


def check_args(metric: str, threshold: float, holdout_fraction: float, finetune_epochs: int) -> None:
    """Raises a ``ValueError`` naming the first bad setting."""
    if metric not in SUPPORTED_METRICS:
        raise ValueError(f"metric must be one of {SUPPORTED_METRICS}, not {metric!r}.")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}.")
    if finetune_epochs < 1:
        raise ValueError(f"finetune_epochs must be at least 1, got {finetune_epochs}.")


def _score(case: SiteCase, model: Any, held: np.ndarray, metric: str, n_bootstrap: int, seed: int) -> dict:
    """The metric's value and 95% interval on the evaluation part (same resamples for every model).

    With several questions: the entry of the one with the lowest lower bound (an undefined bound
    counts as lowest), its name as ``finding`` and every question's entry in ``per_finding``.
    """
    truth = case.targets[held]
    probs = np.asarray(case.scores(model, case.x[held]), dtype=float).reshape(len(held), -1)
    entries = []
    for q in range(truth.shape[1]):
        stats = evaluate_with_intervals(truth[:, q], probs[:, q], n_bootstrap=n_bootstrap, seed=seed)
        entries.append({k: stats[metric][k] for k in ("value", "lo", "hi", "reason")})
    if not case.questions:
        return entries[0]
    per = dict(zip(case.questions, entries, strict=True))
    worst = min(per, key=lambda name: -math.inf if per[name]["lo"] is None else per[name]["lo"])
    return {**per[worst], "finding": worst, "per_finding": per}


def _clears(score: dict, threshold: float) -> bool:
    return score["lo"] is not None and score["lo"] >= threshold


def fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def _lower_bound(score: dict) -> str:
    where = f" (finding {score['finding']!r}, the lowest)" if "finding" in score else ""
    return f"{fmt(score['lo'])}{where}"


def _sample(case: SiteCase, held: np.ndarray, metric: str, threshold: float, fraction: float) -> dict:
    """``n_eval_needed`` and, when some question cannot be judged on this sample, ``reason``."""
    needed, reasons = [], []
    for q in range(case.targets.shape[1]):
        truth = case.targets[held, q]
        n_pos = int(truth.sum())
        check = check_sample(metric, threshold, n_pos, len(truth) - n_pos)
        needed.append(check.n_eval_needed)
        if not check.sufficient:
            name = f"finding {case.questions[q]!r}: " if case.questions else ""
            reason = name + check.explanation
            if check.n_eval_needed is not None:
                total = math.ceil(check.n_eval_needed / fraction)
                unit = case.extra.get("unit", "patients")
                reason += f" That is about {total} labelled {unit} in all at holdout fraction {fraction:g}."
            reasons.append(reason)
    known = [n for n in needed if n is not None]
    return {
        "n_eval_needed": None if len(known) < len(needed) else max(known),
        "reason": " ".join(reasons) if reasons else None,
    }


def judge(
    case: SiteCase,
    *,
    threshold: float,
    metric: str,
    holdout_fraction: float,
    seed: int,
    n_bootstrap: int,
    finetuned_model_path: Path | None = None,
) -> dict:
    """The decision on one site (see the module's steps); the result of ``validate_site``."""
    strata = case.strata if case.strata is not None else case.targets.max(axis=1)
    tune, held = split_rows(strata, holdout_fraction=holdout_fraction, seed=seed)
    any_yes = case.targets.max(axis=1)
    n_pos, n_tune_pos = int(any_yes[held].sum()), int(any_yes[tune].sum())
    result: dict = {
        "files": case.files,
        "n_total": len(case.y),
        "n_eval": len(held),
        "n_eval_pos": n_pos,
        "n_eval_neg": len(held) - n_pos,
        "n_finetune": len(tune),
        "n_finetune_pos": n_tune_pos,
        "n_finetune_neg": len(tune) - n_tune_pos,
        "metric": metric,
        "threshold": threshold,
        "confidence": CONFIDENCE,
        "global": _score(case, case.model, held, metric, n_bootstrap, seed),
        "fine_tuned": None,
        "fine_tuning": None,
        **case.extra,
    }
    if case.questions:
        result["findings"] = {
            name: {
                "n_eval_pos": int(case.targets[held, q].sum()),
                "n_finetune_pos": int(case.targets[tune, q].sum()),
            }
            for q, name in enumerate(case.questions)
        }
    sample = _sample(case, held, metric, threshold, holdout_fraction)
    result["n_eval_needed"] = sample["n_eval_needed"]
    if sample["reason"] is not None:
        return {**result, "decision": DECISION_INSUFFICIENT, "reason": sample["reason"]}
    if _clears(result["global"], threshold):
        reason = f"the global model's 95% lower bound {_lower_bound(result['global'])} reaches {threshold:g}"
        return {**result, "decision": DECISION_DEPLOY, "reason": reason}
    tuned, result["fine_tuning"] = case.fine_tune(case.model, case.x[tune], case.y[tune], seed)
    if finetuned_model_path is not None:
        Path(finetuned_model_path).parent.mkdir(parents=True, exist_ok=True)
        case.save(tuned, Path(finetuned_model_path))
    result["fine_tuned"] = _score(case, tuned, held, metric, n_bootstrap, seed)
    shortfall = f"the global model's lower bound {_lower_bound(result['global'])} is below {threshold:g}"
    after = _lower_bound(result["fine_tuned"])
    if _clears(result["fine_tuned"], threshold):
        return {
            **result,
            "decision": DECISION_DEPLOY_FINETUNED,
            "reason": f"{shortfall}; after fine-tuning it is {after}",
        }
    return {
        **result,
        "decision": DECISION_NOT_FIT,
        "reason": f"{shortfall}, and after fine-tuning still {after}",
    }
