"""Cold start of a new site: is the global model fit for this hospital, or after fine-tuning?

``fedhealth validate-site --model <FL_global_model.pt> --data <site folder> --threshold <t>`` (heart
jobs), or for any ``tabular`` job ``fedhealth validate-site --schema <job result> --dictionary
<dictionary.json | job folder> --data <folder with the export CSV(s) + mapping.json> --threshold <t>``:

1. load the global model and the global scaling of the job that trained it (heart), or its aligned
   schema (``ehr_schema.json``) and data dictionary, harmonize the site's table with its own mapping
   and encode it with the federation's imputation and scaling (:mod:`fedhealth.onboarding.tabular_inputs`);
2. split the site's labelled rows, stratified and seeded, into a fine-tuning part and an
   evaluation part (``holdout_fraction`` of the rows); every reported number comes from the
   evaluation part only;
3. refuse to judge when the evaluation part is too small for any model to show the threshold
   (:mod:`fedhealth.onboarding.sample_size`: Hanley & McNeil 1982 for AUC, Wilson 1927 otherwise);
4. deploy the global model when the lower bound of its 95% bootstrap interval (Efron & Tibshirani
   1993) reaches the threshold; otherwise fine-tune a copy on the fine-tuning part (SGD, batch 4;
   a tree job's XGBoost model grows 10 more trees there instead) and judge that copy on the same
   evaluation part.

Only counts and metrics are reported, never patient values; a hospital's own CSV files are named by
position (``CSV file 2 of 3``), the kit's ``train.csv``/``test.csv`` by name.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

from fedhealth.data.features import encode
from fedhealth.data.messages import safe_reason
from fedhealth.onboarding.artifacts import (
    OnboardingError,
    find_scaling,
    load_global_model,
    load_scaling,
    read_site_rows,
    split_rows,
)
from fedhealth.onboarding.sample_size import SUPPORTED_METRICS, check_sample
from fedhealth.onboarding.tabular_inputs import load_tabular_inputs
from fedhealth.training.loops import LocalTrainConfig, predict, train_local
from fedhealth.training.site_metrics import evaluate_with_intervals
from fedhealth.trees.model import TreeModel, boost_more

DECISION_INSUFFICIENT = "INSUFFICIENT DATA"
DECISION_DEPLOY = "FIT: DEPLOY"
DECISION_DEPLOY_FINETUNED = "FIT AFTER FINE-TUNING: DEPLOY THE FINE-TUNED MODEL"
DECISION_NOT_FIT = "NOT FIT"
FINETUNE_BATCH = 4
# A tree job's model fine-tunes by growing this many more trees, at this learning rate, on the site's rows.
TREE_FINETUNE_ROUNDS = 10
TREE_FINETUNE_ETA = 0.1
# Settings a ``--config`` JSON may hold (command options override them), with their types.
CONFIG_TYPES = {
    "metric": str,
    "threshold": float,
    "finetune_epochs": int,
    "finetune_lr": float,
    "holdout_fraction": float,
    "seed": int,
    "n_bootstrap": int,
}
CONFIG_KEYS = tuple(CONFIG_TYPES)


def _score(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, metric: str, n_bootstrap: int, seed: int
) -> dict:
    """The metric's value and 95% interval on the evaluation part (same resamples for every model)."""
    entry = evaluate_with_intervals(y, predict(model, x), n_bootstrap=n_bootstrap, seed=seed)[metric]
    return {k: entry[k] for k in ("value", "lo", "hi", "reason")}


def _clears(score: dict, threshold: float) -> bool:
    return score["lo"] is not None and score["lo"] >= threshold


def _check_args(metric: str, threshold: float, holdout_fraction: float, finetune_epochs: int) -> None:
    if metric not in SUPPORTED_METRICS:
        raise ValueError(f"metric must be one of {SUPPORTED_METRICS}, not {metric!r}.")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}.")
    if finetune_epochs < 1:
        raise ValueError(f"finetune_epochs must be at least 1, got {finetune_epochs}.")


def validate_site(
    *,
    model_path: Path | None,
    data_dir: Path,
    threshold: float,
    metric: str = "auc",
    scaling_path: Path | None = None,
    schema_path: Path | None = None,
    dictionary_path: Path | None = None,
    finetune_epochs: int = 5,
    finetune_lr: float = 0.03,
    holdout_fraction: float = 0.5,
    seed: int = 0,
    n_bootstrap: int = 1000,
    finetuned_model_path: Path | None = None,
) -> dict:
    """Judge the global model on a new site's labelled rows; fine-tune it when it falls short.

    Args:
        model_path: the job's ``FL_global_model.pt`` (a tabular job: default, found in the result folder).
        data_dir: the site's data folder (with ``heart_disease/*.csv``) or one CSV file; a tabular job:
            the folder with the export CSV(s) and ``mapping.json`` (or one CSV next to it).
        threshold: the lower bound of the metric's 95% interval must reach this.
        metric: ``"auc"``, ``"accuracy"``, ``"sensitivity"`` or ``"specificity"``.
        scaling_path: the global ``fedhealth_scaling.json``; default: found next to or above the model.
        schema_path: a tabular job's ``ehr_schema.json`` or downloaded result folder; with
            ``dictionary_path``, it selects the tabular path.
        dictionary_path: the job's data dictionary (JSON) or a job folder whose app config carries it.
        finetune_epochs: passes over the fine-tuning part.
        finetune_lr: SGD learning rate of the fine-tuning.
        holdout_fraction: share of the rows kept for evaluation (never trained on).
        seed: seeds the split, the fine-tuning order and the bootstrap.
        n_bootstrap: bootstrap resamples of each interval.
        finetuned_model_path: when set and fine-tuning ran, the fine-tuned model is saved there in
            the job's format (``{"model": state_dict}``).

    Returns:
        Counts (``n_eval``, ``n_finetune`` and their classes), ``metric``, ``threshold``, ``global``
        and ``fine_tuned`` (``{"value", "lo", "hi", "reason"}``; ``fine_tuned`` None when not run),
        ``decision`` (one of the ``DECISION_*`` strings) and ``reason``; a tabular job adds
        ``outcome`` (the target's name), ``data_report`` and ``schema_notes`` (lines, counts only).

    Raises:
        ValueError: bad settings; :class:`~fedhealth.onboarding.artifacts.OnboardingError` for a bad
            model or scaling file; :class:`~fedhealth.data.site_data.SiteDataError` for bad site data.
    """
    _check_args(metric, threshold, holdout_fraction, finetune_epochs)
    extra: dict = {}
    if schema_path is not None or dictionary_path is not None:
        if scaling_path is not None:
            raise ValueError("--scaling is a heart job's global scaling; a tabular job's is in its --schema")
        job = load_tabular_inputs(
            data_dir=Path(data_dir),
            model_path=model_path,
            schema_path=schema_path,
            dictionary_path=dictionary_path,
        )
        model, x, y, files = job.model, job.x, job.rows.labels, job.rows.files
        extra = {
            "outcome": job.dictionary.target,
            "data_report": [line for r in job.rows.reports for line in r.lines_out()],
            "schema_notes": job.notes,
        }
    else:
        if model_path is None:
            raise OnboardingError("no model: pass --model (the job's FL_global_model.pt)")
        model = load_global_model(Path(model_path))
        scaling_file = Path(scaling_path) if scaling_path is not None else find_scaling(Path(model_path))
        scaler, chol_missing = load_scaling(scaling_file, n_features=model.in_features)
        rows, files = read_site_rows(Path(data_dir))
        x = scaler.transform(encode(rows.features, chol_zero_as_missing=chol_missing))
        y = rows.labels
    tune, held = split_rows(y, holdout_fraction=holdout_fraction, seed=seed)
    x_eval, y_eval = x[held], y[held]
    n_pos, n_neg = int(y_eval.sum()), int(len(y_eval) - y_eval.sum())
    result: dict = {
        "files": files,
        "n_total": len(y),
        "n_eval": len(held),
        "n_eval_pos": n_pos,
        "n_eval_neg": n_neg,
        "n_finetune": len(tune),
        "n_finetune_pos": int(y[tune].sum()),
        "n_finetune_neg": int(len(tune) - y[tune].sum()),
        "metric": metric,
        "threshold": threshold,
        "confidence": 0.95,
        "global": _score(model, x_eval, y_eval, metric, n_bootstrap, seed),
        "fine_tuned": None,
        "fine_tuning": None,
        **extra,
    }
    check = check_sample(metric, threshold, n_pos, n_neg)
    result["n_eval_needed"] = check.n_eval_needed
    if not check.sufficient:
        reason = check.explanation
        if check.n_eval_needed is not None:
            total = math.ceil(check.n_eval_needed / holdout_fraction)
            reason += (
                f" That is about {total} labelled patients in all at holdout fraction {holdout_fraction:g}."
            )
        return {**result, "decision": DECISION_INSUFFICIENT, "reason": reason}
    if _clears(result["global"], threshold):
        reason = f"the global model's 95% lower bound {result['global']['lo']:.3f} reaches {threshold:g}"
        return {**result, "decision": DECISION_DEPLOY, "reason": reason}
    if isinstance(model, TreeModel):  # trees fine-tune by growing more trees on the site's rows
        tuned = boost_more(model, x[tune], y[tune], rounds=TREE_FINETUNE_ROUNDS, eta=TREE_FINETUNE_ETA)
        result["fine_tuning"] = {"boosting_rounds": TREE_FINETUNE_ROUNDS, "eta": TREE_FINETUNE_ETA}
    else:
        tuned = copy.deepcopy(model)
        config = LocalTrainConfig(lr=finetune_lr, batch_size=FINETUNE_BATCH, local_epochs=finetune_epochs)
        train_local(tuned, x[tune], y[tune], config, generator=torch.Generator().manual_seed(seed))
        result["fine_tuning"] = {"epochs": finetune_epochs, "lr": finetune_lr, "batch_size": FINETUNE_BATCH}
    if finetuned_model_path is not None:
        Path(finetuned_model_path).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(tuned, TreeModel):  # XGBoost's own JSON format, as the job exports it
            Path(finetuned_model_path).write_bytes(tuned.model_json)
        else:
            torch.save({"model": tuned.state_dict()}, finetuned_model_path)
    result["fine_tuned"] = _score(tuned, x_eval, y_eval, metric, n_bootstrap, seed)
    lo_global, lo_tuned = result["global"]["lo"], result["fine_tuned"]["lo"]
    shortfall = f"the global model's lower bound {_fmt(lo_global)} is below {threshold:g}"
    if _clears(result["fine_tuned"], threshold):
        return {
            **result,
            "decision": DECISION_DEPLOY_FINETUNED,
            "reason": f"{shortfall}; after fine-tuning it is {_fmt(lo_tuned)}",
        }
    return {
        **result,
        "decision": DECISION_NOT_FIT,
        "reason": f"{shortfall}, and after fine-tuning still {_fmt(lo_tuned)}",
    }


def _fmt(x: float | None) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def _line(label: str, metric: str, score: dict | None) -> str:
    if score is None:
        return f"{label:<18}not run"
    if score["value"] is None:
        return f"{label:<18}{metric} undefined: {score['reason']}"
    return f"{label:<18}{metric} {score['value']:.3f} (95% CI {_fmt(score['lo'])} to {_fmt(score['hi'])})"


def format_report(result: dict) -> str:
    """A terminal report of :func:`validate_site`'s result (counts and metrics only)."""
    metric = result["metric"].upper() if result["metric"] == "auc" else result["metric"]
    outcome = result.get("outcome", "disease")
    lines = [
        f"validate-site: {metric} against threshold {result['threshold']:g} "
        "(the 95% interval's lower bound must reach it)",
        f"site data: {result['n_total']} labelled patients from {', '.join(result['files'])}",
        *(f"  {line}" for line in result.get("data_report", [])),
        *(f"  note: {line}" for line in result.get("schema_notes", [])),
        f"  evaluation part: {result['n_eval']} ({result['n_eval_pos']} with {outcome}, "
        f"{result['n_eval_neg']} without); fine-tuning part: {result['n_finetune']} (never reported on)",
        _line("global model:", metric, result["global"]),
    ]
    if result["fine_tuned"] is not None:
        ft = result["fine_tuning"]
        how = (
            f"{ft['boosting_rounds']} more trees, eta {ft['eta']:g}"
            if "boosting_rounds" in ft
            else f"{ft['epochs']} epochs, lr {ft['lr']:g}, batch {ft['batch_size']}"
        )
        lines.append(_line("fine-tuned model:", metric, result["fine_tuned"]) + f"  [{how}]")
    lines += [f"decision: {result['decision']}", f"reason: {result['reason']}"]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``validate-site`` options (also used by the ``fedhealth`` command's sub-parser)."""
    parser.add_argument(
        "--model", type=Path, help="the job's FL_global_model.pt (tabular: default, found with --schema)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="site data folder (heart_disease/*.csv) or a CSV; tabular: folder with CSV(s) + mapping.json",
    )
    parser.add_argument(
        "--schema", type=Path, help="tabular job: its result folder or ehr_schema.json (the aligned schema)"
    )
    parser.add_argument(
        "--dictionary",
        type=Path,
        help="tabular job: the data dictionary (JSON) or a job folder (default: the --schema folder)",
    )
    parser.add_argument("--threshold", type=float, help="the 95%% lower bound must reach this")
    parser.add_argument("--metric", choices=SUPPORTED_METRICS, help="default: auc")
    parser.add_argument("--scaling", type=Path, help="fedhealth_scaling.json (default: found with the model)")
    parser.add_argument("--finetune-epochs", type=int, help="default: 5")
    parser.add_argument("--finetune-lr", type=float, help="default: 0.03")
    parser.add_argument("--holdout-fraction", type=float, help="share kept for evaluation (default: 0.5)")
    parser.add_argument("--seed", type=int, help="default: 0")
    parser.add_argument("--config", type=Path, help=f"JSON with any of {list(CONFIG_KEYS)}; options win")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    parser.add_argument("--save-model", type=Path, help="save the fine-tuned model here when one is made")
    return parser


def _settings(args: argparse.Namespace) -> dict:
    """Settings from ``--config`` overridden by the command's options."""
    settings: dict = {}
    if args.config is not None:
        try:
            settings = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"config file {args.config} cannot be read as JSON: {exc}") from exc
        if not isinstance(settings, dict) or set(settings) - set(CONFIG_KEYS):
            unknown = sorted(set(settings) - set(CONFIG_KEYS)) if isinstance(settings, dict) else settings
            raise ValueError(
                f"config file {args.config.name}: unknown setting(s) {unknown}; use {CONFIG_KEYS}"
            )
    settings.update({k: getattr(args, k) for k in CONFIG_KEYS if getattr(args, k, None) is not None})
    for key, value in settings.items():
        kind = CONFIG_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, (kind, int) if kind is float else kind):
            raise ValueError(f"setting {key!r} must be a {kind.__name__}, got {type(value).__name__}")
    if "threshold" not in settings:
        raise ValueError("no threshold: pass --threshold or set 'threshold' in --config")
    return settings


def run(args: argparse.Namespace) -> int:
    """Run ``validate-site`` from parsed options: 0 with a decision, 2 on bad input (no traceback)."""
    try:
        result = validate_site(
            model_path=args.model,
            data_dir=args.data,
            scaling_path=args.scaling,
            schema_path=args.schema,
            dictionary_path=args.dictionary,
            finetuned_model_path=args.save_model,
            **_settings(args),
        )
    except (ValueError, OSError) as exc:  # SiteDataError and OnboardingError are ValueErrors
        print(f"validate-site: {safe_reason(exc)}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.out is not None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``validate-site`` as a stand-alone command (argparse itself exits with 2 on unknown options)."""
    parser = argparse.ArgumentParser(prog="fedhealth validate-site", description=__doc__.splitlines()[0])
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
