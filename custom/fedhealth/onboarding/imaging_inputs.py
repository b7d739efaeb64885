"""What a new site of an imaging (``dicom``) job needs: the job's task, its global model, its DICOM folder.

- the job: its downloaded result folder or job folder (the ``SiteExecutor``'s ``task_args`` in an
  ``app*/config/config_fed_client.json``, the round learning rate in ``config_fed_server.json``), that
  client config itself, or a JSON file of the ``task_args`` alone (``model``, ``image_size``,
  ``channels``, ``label_task``, ``classes``, ``intensity``);
- the model: ``FL_global_model.pt`` (FLARE's ``PTFileModelPersistor``), found in the result folder or given;
- the site's images: a folder of DICOM files in any layout and a label table (``labels.csv`` in the
  folder, or given), keyed by file or SOP Instance UID (:mod:`fedhealth.imaging.labels`), read as the
  sites read theirs (:func:`fedhealth.imaging.site.load_split`): quarantine, PHI audit (identified
  data refused unless the hospital says otherwise), the decode chain, the job's preprocessing.

The gate asks the sites' question (:func:`fedhealth.imaging.loops.binary_view`): the label for a
binary task, "not class 0" for a multi-class one; a multi-label task is judged per finding, and the
decision takes the lowest finding. The report lists quarantined files by their path inside the
folder, as the site's quarantine report does (it stays at the hospital); never a pixel or a label.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from fedhealth.data.messages import SiteDataError
from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import binary_view, predict_images, train_images
from fedhealth.imaging.quarantine import candidate_files
from fedhealth.imaging.site import ImageSplit, load_split
from fedhealth.models.image_model import ImageModel, load_image_weights
from fedhealth.onboarding.artifacts import OnboardingError, read_checkpoint
from fedhealth.onboarding.decision import SiteCase
from fedhealth.onboarding.tabular_inputs import (
    MODEL_FILE,
    executor_args,
    find_in_result,
    read_json,
    site_executor_args,
)
from fedhealth.tasks.imaging import ImagingTask
from fedhealth.training.loops import LocalTrainConfig

TASK_NAME = "dicom"
SERVER_CONFIG = "config_fed_server.json"
DEFAULT_LR = 1e-3  # when the job names no round learning rate
DEFAULT_BATCH = 16  # the SiteExecutor's default
MIN_IMAGES = 2  # the split needs two; the sample-size check judges whether there are enough
SHOWN_QUARANTINED = 20  # files listed in the terminal report; all of them are in --out


@dataclass(frozen=True)
class ImagingJob:
    """The job's task, its local training settings and round learning rate, and where its model is."""

    task: ImagingTask
    local: dict
    lr: float | None
    model_file: Path | None


def _task(task_args: object, where: str) -> ImagingTask:
    if not isinstance(task_args, dict):
        raise OnboardingError(f"{where}: the task_args are not a JSON object")
    try:
        return ImagingTask(**task_args)
    except (TypeError, ValueError) as exc:
        raise OnboardingError(f"{where}: the task_args do not make a {TASK_NAME} task: {exc}") from exc


def _server_lr(folder: Path) -> float | None:
    """The round learning rate of the job's server config (its shareable generator's ``lr``)."""
    for path in sorted(folder.rglob(SERVER_CONFIG)):
        config = read_json(path, "server config")
        for component in config.get("components", []) if isinstance(config, dict) else []:
            lr = component.get("args", {}).get("lr") if isinstance(component, dict) else None
            if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
                return float(lr)
    return None


def load_imaging_job(source: Path) -> ImagingJob:
    """The imaging job from a result or job folder, its client config, or a JSON file of its task args.

    Raises:
        OnboardingError: nothing of a ``dicom`` job there, apps that disagree, or task args that do not
            make one (the message says which).
    """
    source = Path(source)
    if source.is_file():
        data, folder = read_json(source, "job file"), None
        found = executor_args(data) or [{"task_args": data}]  # a client config, or the task_args alone
    elif source.is_dir():
        found, folder = site_executor_args(source), source
    else:
        raise OnboardingError(f"{source} does not exist (give the imaging job's result or job folder)")
    found = [args for args in found if isinstance(args, dict) and args.get("task", TASK_NAME) == TASK_NAME]
    if not found:
        raise OnboardingError(
            f"{source.name} names no {TASK_NAME!r} task (is it an imaging job?); pass its result folder, "
            "its config_fed_client.json or a JSON file of its task_args"
        )
    if any(args.get("task_args") != found[0].get("task_args") for args in found):
        raise OnboardingError(f"the apps under {source.name} carry different task_args")
    args = found[0]
    local = {
        "batch_size": int(args.get("batch_size", DEFAULT_BATCH)),
        "optimizer": str(args.get("optimizer", "sgd")),
        "weight_decay": float(args.get("weight_decay", 0.0)),
    }
    model_file = None
    if folder is not None and any(folder.rglob(MODEL_FILE)):
        model_file = find_in_result(folder, MODEL_FILE, kind="imaging")
    return ImagingJob(
        _task(args.get("task_args"), source.name), local, _server_lr(folder) if folder else None, model_file
    )


def load_image_model(path: Path, task: ImagingTask) -> ImageModel:
    """The global model of the job's architecture with the saved weights.

    Raises:
        OnboardingError: unreadable, or weights of another architecture, channel or output count.
    """
    model = ImageModel(task.model, task.channels, task.spec.n_outputs)
    try:
        return load_image_weights(model, read_checkpoint(Path(path)))
    except ValueError as exc:
        if isinstance(exc, OnboardingError):
            raise
        raise OnboardingError(f"model file {Path(path).name} does not fit the job's task: {exc}") from exc


def read_site_images(
    data_dir: Path, task: ImagingTask, *, labels_path: Path | None = None, allow_identified: bool = False
) -> tuple[ImageSplit, int]:
    """The folder's labelled images as the sites read theirs, and how many files were scanned.

    Raises:
        SiteDataError: no folder, an unusable label table, identified files (unless allowed), or fewer
            than two usable images (with the quarantine counts).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SiteDataError("the DICOM data folder does not exist or is not a folder")
    settings = replace(task.pipeline(require_deidentified=not allow_identified), min_images=MIN_IMAGES)
    split = load_split(data_dir, task.spec, settings, labels_path=labels_path, where="the DICOM folder")
    return split, len(candidate_files(data_dir))


def data_report(split: ImageSplit, n_files: int) -> list[str]:
    """Counts by quarantine reason, the quarantined files (paths inside the folder) and the PHI audit."""
    entries = split.quarantine.entries
    counts = ", ".join(f"{reason}: {n}" for reason, n in split.quarantine.counts().items())
    lines = [f"{n_files} files scanned, {len(entries)} quarantined" + (f" ({counts})" if counts else "")]
    lines += [f"  quarantined {e.file}: {e.reason} ({e.detail})" for e in entries[:SHOWN_QUARANTINED]]
    if len(entries) > SHOWN_QUARANTINED:
        lines.append(f"  ... and {len(entries) - SHOWN_QUARANTINED} more (all in --out's 'quarantine')")
    phi = split.phi
    if phi["n_identified"]:  # only with allow_identified: else load_split refused them
        tags = ", ".join(f"{name} ({count})" for name, count in phi["tags"].items())
        lines.append(
            f"PHI audit: {phi['n_identified']} of {phi['n_files']} files carry identifying attributes: "
            f"{tags}; read because of --allow-identified"
        )
    else:
        lines.append(
            f"PHI audit: none of the {phi['n_files']} decoded files carries an identifying attribute"
        )
    return lines


def _targets(y: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """``(n, Q)`` 0/1: the gate's question(s) (:func:`binary_view`'s, or one per finding)."""
    if spec.task == "multilabel":
        return np.asarray(y, dtype=float)
    placeholder = np.zeros(len(y)) if spec.task == "binary" else np.zeros((len(y), spec.n_outputs))
    return binary_view(y, placeholder, spec)[0].reshape(-1, 1)


def _outcome(spec: LabelSpec) -> str:
    if spec.task == "multilabel":
        return "any finding"
    if spec.task == "multiclass":
        return f"a class other than {spec.classes[0]!r}"
    return f"{spec.positive!r} (the positive class)"


def imaging_case(
    *,
    job: Path,
    data_dir: Path,
    model_path: Path | None = None,
    labels_path: Path | None = None,
    allow_identified: bool = False,
    finetune_epochs: int = 5,
    finetune_lr: float | None = None,
) -> SiteCase:
    """The decision's case for an imaging job: its model, the site's images and the task's training loop.

    Fine-tuning trains a copy with the task's own loop (:func:`~fedhealth.imaging.loops.train_images`,
    the job's optimizer, batch size, weight decay and augmentation) at ``finetune_lr`` (default: the
    job's round learning rate, else 0.001).
    """
    loaded = load_imaging_job(job)
    task, spec = loaded.task, loaded.task.spec
    model_file = Path(model_path) if model_path is not None else loaded.model_file
    if model_file is None:
        raise OnboardingError(f"no model: pass --model (the job's {MODEL_FILE}) or the job's result folder")
    model = load_image_model(model_file, task)
    split, n_files = read_site_images(
        data_dir, task, labels_path=labels_path, allow_identified=allow_identified
    )
    lr = finetune_lr if finetune_lr is not None else loaded.lr or DEFAULT_LR

    def scores(model: ImageModel, x: np.ndarray) -> np.ndarray:
        probs = predict_images(model, x, spec)
        return probs if spec.task == "multilabel" else binary_view(np.zeros(len(probs)), probs, spec)[1]

    def fine_tune(model: ImageModel, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[ImageModel, dict]:
        tuned = copy.deepcopy(model)
        config = LocalTrainConfig(lr=lr, local_epochs=finetune_epochs, **loaded.local)
        generator = torch.Generator().manual_seed(seed)
        train_images(tuned, x, y, config, spec, augment=task.augment, generator=generator, seed=seed)
        return tuned, {"epochs": finetune_epochs, "lr": lr, **loaded.local, "augment": task.augment}

    return SiteCase(
        model=model,
        x=split.x,
        y=split.y,
        targets=_targets(split.y, spec),
        scores=scores,
        fine_tune=fine_tune,
        files=["the DICOM folder"],
        questions=spec.classes if spec.task == "multilabel" else (),
        strata=None if spec.task == "multilabel" else split.y,
        extra={
            "unit": "images",
            "outcome": _outcome(spec),
            "task": {"label_task": spec.task, "classes": list(spec.classes), "model": task.model},
            "data_report": data_report(split, n_files),
            "quarantine": split.quarantine.as_dict(),
            "phi": split.phi,
        },
    )
