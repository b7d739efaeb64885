"""Cold start of a new site: is the global model fit for this hospital, or after fine-tuning?

``fedhealth validate-site --model <FL_global_model.pt> --data <site folder> --threshold <t>`` (heart
jobs), or for any ``tabular`` job ``fedhealth validate-site --schema <job result> --dictionary
<dictionary.json | job folder> --data <folder with the export CSV(s) + mapping.json> --threshold <t>``,
or for an imaging (``dicom``) job ``fedhealth validate-site --job <job result> --data <DICOM folder>
--threshold <t>``:

1. load the global model and the global scaling of the job that trained it (heart), or its aligned
   schema (``ehr_schema.json``) and data dictionary, harmonize the site's table with its own mapping
   and encode it with the federation's imputation and scaling (:mod:`fedhealth.onboarding.tabular_inputs`);
   an imaging job: its task args and model, the site's DICOM folder read as the sites read theirs
   (quarantine, PHI audit, decode, the job's preprocessing; :mod:`fedhealth.onboarding.imaging_inputs`);
2. split the site's labelled rows, stratified and seeded, into a fine-tuning part and an
   evaluation part (``holdout_fraction`` of the rows); every reported number comes from the
   evaluation part only;
3. refuse to judge when the evaluation part is too small for any model to show the threshold
   (:mod:`fedhealth.onboarding.sample_size`: Hanley & McNeil 1982 for AUC, Wilson 1927 otherwise);
4. deploy the global model when the lower bound of its 95% bootstrap interval (Efron & Tibshirani
   1993) reaches the threshold; otherwise fine-tune a copy on the fine-tuning part (SGD, batch 4;
   a tree job's XGBoost model grows 10 more trees there instead; an imaging model trains with the
   task's own loop and the job's settings) and judge that copy on the same evaluation part. A
   multi-label imaging task is judged per finding; the lowest finding decides.

Steps 2 to 4 are :func:`fedhealth.onboarding.decision.judge`, the same for every kind of job.

Only counts and metrics are reported, never patient values; a hospital's own CSV files are named by
position (``CSV file 2 of 3``), the kit's ``train.csv``/``test.csv`` by name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedhealth.data.messages import safe_reason
from fedhealth.onboarding.decision import (  # noqa: F401 - the decisions are part of this module's API
    DECISION_DEPLOY,
    DECISION_DEPLOY_FINETUNED,
    DECISION_INSUFFICIENT,
    DECISION_NOT_FIT,
    SiteCase,
    check_args,
    fmt,
    judge,
    save_torch,
)
from fedhealth.onboarding.imaging_inputs import imaging_case
from fedhealth.onboarding.sample_size import SUPPORTED_METRICS
from fedhealth.onboarding.tabular_case import tabular_case
from fedhealth.onboarding.validate_report import format_report

FINETUNE_LR = 0.03  # a tabular network's fine-tuning (SGD); an imaging job's comes from the job
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


def validate_site(
    *,
    model_path: Path | None,
    data_dir: Path,
    threshold: float,
    metric: str = "auc",
    scaling_path: Path | None = None,
    schema_path: Path | None = None,
    dictionary_path: Path | None = None,
    job_path: Path | None = None,
    labels_path: Path | None = None,
    allow_identified: bool = False,
    finetune_epochs: int = 5,
    finetune_lr: float | None = None,
    holdout_fraction: float = 0.5,
    seed: int = 0,
    n_bootstrap: int = 1000,
    finetuned_model_path: Path | None = None,
) -> dict:
    """Judge the global model on a new site's labelled rows or images; fine-tune it when it falls short.

    Args:
        model_path: the job's ``FL_global_model.pt`` (tabular and imaging: default, found in the result
            folder).
        data_dir: the site's data folder (with ``heart_disease/*.csv``) or one CSV file; a tabular job:
            the folder with the export CSV(s) and ``mapping.json`` (or one CSV next to it); an imaging
            job: the folder of DICOM files (any layout).
        threshold: the lower bound of the metric's 95% interval must reach this.
        metric: ``"auc"``, ``"accuracy"``, ``"sensitivity"`` or ``"specificity"``.
        scaling_path: the global ``fedhealth_scaling.json``; default: found next to or above the model.
        schema_path: a tabular job's ``ehr_schema.json`` or downloaded result folder; with
            ``dictionary_path``, it selects the tabular path.
        dictionary_path: the job's data dictionary (JSON) or a job folder whose app config carries it.
        job_path: an imaging (``dicom``) job's result or job folder, its client config or a JSON of its
            ``task_args``; selects the imaging path (:mod:`fedhealth.onboarding.imaging_inputs`).
        labels_path: an imaging job's label table (default: ``labels.csv`` in ``data_dir``).
        allow_identified: an imaging job reads files that carry identifying attributes (default: refused).
        finetune_epochs: passes over the fine-tuning part.
        finetune_lr: learning rate of the fine-tuning (default: 0.03 with SGD for a tabular network,
            the job's own for an imaging job).
        holdout_fraction: share of the rows kept for evaluation (never trained on).
        seed: seeds the split, the fine-tuning order and the bootstrap.
        n_bootstrap: bootstrap resamples of each interval.
        finetuned_model_path: when set and fine-tuning ran, the fine-tuned model is saved there in
            the job's format (``{"model": state_dict}``).

    Returns:
        Counts (``n_eval``, ``n_finetune`` and their classes), ``metric``, ``threshold``, ``global``
        and ``fine_tuned`` (``{"value", "lo", "hi", "reason"}``; ``fine_tuned`` None when not run),
        ``decision`` (one of the ``DECISION_*`` strings) and ``reason``; a tabular job adds
        ``outcome`` (the target's name), ``data_report`` and ``schema_notes`` (lines, counts only); an
        imaging job adds ``unit``, ``data_report``, ``quarantine``, ``phi`` and, for a multi-label task,
        ``findings`` and each score's ``per_finding`` (the score is its lowest finding's).

    Raises:
        ValueError: bad settings; :class:`~fedhealth.onboarding.artifacts.OnboardingError` for a bad
            model or scaling file; :class:`~fedhealth.data.site_data.SiteDataError` for bad site data.
    """
    check_args(metric, threshold, holdout_fraction, finetune_epochs)
    if job_path is not None:
        if any(p is not None for p in (scaling_path, schema_path, dictionary_path)):
            raise ValueError("--job is an imaging job's; --scaling, --schema and --dictionary are tabular")
        case = imaging_case(
            job=Path(job_path),
            data_dir=Path(data_dir),
            model_path=model_path,
            labels_path=labels_path,
            allow_identified=allow_identified,
            finetune_epochs=finetune_epochs,
            finetune_lr=finetune_lr,
        )
    else:
        if labels_path is not None or allow_identified:
            raise ValueError("--labels and --allow-identified are for an imaging job (pass --job)")
        case = tabular_case(
            model_path=model_path,
            data_dir=data_dir,
            scaling_path=scaling_path,
            schema_path=schema_path,
            dictionary_path=dictionary_path,
            finetune_epochs=finetune_epochs,
            finetune_lr=FINETUNE_LR if finetune_lr is None else finetune_lr,
        )
    return judge(
        case,
        threshold=threshold,
        metric=metric,
        holdout_fraction=holdout_fraction,
        seed=seed,
        n_bootstrap=n_bootstrap,
        finetuned_model_path=finetuned_model_path,
    )


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``validate-site`` options (also used by the ``fedhealth`` command's sub-parser)."""
    parser.add_argument(
        "--model",
        type=Path,
        help="the job's FL_global_model.pt (tabular, imaging: default, found with --schema / --job)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="site data folder (heart_disease/*.csv) or a CSV; tabular: folder with CSV(s) + mapping.json; "
        "imaging: the folder of DICOM files (any layout)",
    )
    parser.add_argument(
        "--job",
        type=Path,
        help="imaging (dicom) job: its result or job folder, its config_fed_client.json, or a JSON of its "
        "task_args (model, image_size, channels, label_task, classes, intensity)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="imaging: the label table, keyed by 'file' or 'sop_instance_uid' (default: --data/labels.csv)",
    )
    parser.add_argument(
        "--allow-identified",
        action="store_true",
        help="imaging: read DICOM files that carry identifying attributes (default: refused, tags named)",
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
    parser.add_argument(
        "--finetune-lr", type=float, help="default: 0.03 (SGD); imaging: the job's round lr, else 0.001"
    )
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
            job_path=getattr(args, "job", None),
            labels_path=getattr(args, "labels", None),
            allow_identified=bool(getattr(args, "allow_identified", False)),
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
