"""The DICOM imaging task: a site's labelled DICOM splits, any label form, any image set.

A site keeps ``<data_root>/<folder>/{train,val,test}/`` with DICOM files in any structure and a
``labels.csv`` each (:mod:`fedhealth.imaging.site`). On load it quarantines unusable files, audits PHI
(refusing identified data when the site requires de-identification, its default) and decodes through
the site's cache; the quarantine report stays in the run folder. Rounds report on the validation split;
the cross-site ``validate`` task on the test split, with MONAI per-label AUC for multi-class and
multi-label tasks and each finding's bootstrap intervals (``per_finding``) for the per-finding gate.
A new DICOM image set needs no code: a job names this task with its labels.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedhealth import constants as C
from fedhealth.data.messages import SiteDataError
from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import (
    binary_view,
    evaluate_images,
    finding_views,
    metrics_from_probs,
    predict_images,
    train_images,
)
from fedhealth.imaging.quarantine import QuarantineReport
from fedhealth.imaging.site import CXR_DATASET_DIR, ImageSplit, PipelineSettings, load_site_images
from fedhealth.models.cnn import check_norm
from fedhealth.models.image_model import ImageModel, load_image_weights
from fedhealth.tasks.base import ExtraTask, SiteContext
from fedhealth.tasks.registry import register_task
from fedhealth.training.loops import LocalTrainConfig
from fedhealth.training.metrics import clean_metrics
from fedhealth.training.operating_point import OperatingPointConfig
from fedhealth.training.site_metrics import evaluate_with_intervals
from fedhealth.training.site_operating_point import site_operating_point


class ImageSite:
    """One site's decoded splits (``train``, ``val``, ``test``) seen through the task contract."""

    round_split = "val"

    def __init__(
        self,
        name: str,
        splits: Mapping[str, ImageSplit],
        spec: LabelSpec,
        *,
        augment: bool,
        operating_point: OperatingPointConfig | None = None,
        mixed_precision: bool = True,
    ) -> None:
        self.name = name
        self.splits = dict(splits)
        self.spec = spec
        self.augment = augment
        self.mixed_precision = mixed_precision
        self.binary = spec.task == "binary"
        self.operating_point = operating_point or OperatingPointConfig()

    @classmethod
    def from_arrays(
        cls,
        name: str,
        arrays: Mapping[str, tuple[np.ndarray, np.ndarray]],
        spec: LabelSpec,
        *,
        augment: bool = False,
        operating_point: OperatingPointConfig | None = None,
    ) -> ImageSite:
        """A site from decoded ``(x, y)`` per split already in memory (the in-process loop's path).

        Raises:
            ValueError: a ``train``, ``val`` or ``test`` split is missing, or ``train`` is empty.
        """
        missing = [s for s in ("train", "val", "test") if s not in arrays]
        if missing:
            raise ValueError(f"image site {name!r} lacks the split(s) {missing}.")
        if len(arrays["train"][1]) == 0:
            raise ValueError(f"image site {name!r} has no training images.")
        splits = {
            split: ImageSplit(
                x=np.asarray(x), y=np.asarray(y), quarantine=QuarantineReport(), phi={}, seconds=0.0
            )
            for split, (x, y) in arrays.items()
        }
        return cls(name, splits, spec, augment=augment, operating_point=operating_point)

    @property
    def n_train(self) -> int:
        return len(self.splits["train"])

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        data = self.splits[split]
        return data.x, data.y

    def train(
        self,
        model: nn.Module,
        config: LocalTrainConfig,
        *,
        generator: torch.Generator,
        seed: int,
        anchor: list[torch.Tensor] | None = None,
    ) -> dict[str, float]:
        data = self.splits["train"]
        return train_images(
            model,
            data.x,
            data.y,
            config,
            self.spec,
            augment=self.augment,
            generator=generator,
            seed=seed,
            anchor=anchor,
            mixed_precision=self.mixed_precision,
        )

    def evaluate(self, model: nn.Module, split: str) -> dict:
        data = self.splits[split]
        return clean_metrics(
            evaluate_images(model, data.x, data.y, self.spec, mixed_precision=self.mixed_precision)
        )

    def validate(self, model: nn.Module, *, n_bootstrap: int) -> dict:
        test = self.splits["test"]
        probs = predict_images(model, test.x, self.spec, mixed_precision=self.mixed_precision)
        metrics = {**clean_metrics(metrics_from_probs(test.y, probs, self.spec)), **self.sizes()}
        labels, scores = binary_view(test.y, probs, self.spec)
        # Operating point: calibrate and choose the threshold on val, measure on test; the gate's
        # intervals are at that threshold (AUC is unchanged by the monotone calibration).
        metrics[C.M_OPERATING_POINT], metrics[C.M_INTERVALS] = self._operating_point(
            model, (labels, scores), n_bootstrap=n_bootstrap
        )
        metrics |= self._per_finding(test.y, probs, n_bootstrap=n_bootstrap)
        if self.binary:  # which class sensitivity is the recall of
            metrics[C.M_POSITIVE_CLASS] = self.spec.positive
        return metrics

    def _operating_point(
        self, model: nn.Module, test: tuple[np.ndarray, np.ndarray], *, n_bootstrap: int
    ) -> tuple[dict, dict]:
        """The binary view's operating point (chosen on ``val``) and the test intervals at it."""
        val = self.splits["val"]
        val_probs = predict_images(model, val.x, self.spec, mixed_precision=self.mixed_precision)
        val_view = binary_view(val.y, val_probs, self.spec)
        return site_operating_point(val_view, test, self.operating_point, n_bootstrap=n_bootstrap)

    def _per_finding(self, y: np.ndarray, probs: np.ndarray, *, n_bootstrap: int) -> dict:
        """Multi-label and multi-class: each finding's (class's, one-vs-rest) intervals; binary: none."""
        views = finding_views(y, probs, self.spec)
        if not views:
            return {}
        return {
            C.M_PER_FINDING: {
                name: evaluate_with_intervals(labels, scores, n_bootstrap=n_bootstrap)
                for name, (labels, scores) in views.items()
            }
        }

    def sizes(self) -> dict[str, int]:
        return {
            C.M_N_TRAIN: len(self.splits["train"]),
            C.M_N_TEST: len(self.splits["test"]),
            C.M_N_QUARANTINED: sum(len(s.quarantine.entries) for s in self.splits.values()),
        }

    def extra_tasks(self) -> dict[str, ExtraTask]:
        return {}

    def report(self) -> dict:
        """Per split: the quarantine report and the PHI audit (kept in the site's run folder)."""
        return {name: {"quarantine": s.quarantine.as_dict(), "phi": s.phi} for name, s in self.splits.items()}


@register_task("dicom")
@dataclass(frozen=True)
class ImagingTask:
    """Image classification on each site's DICOM files.

    Args:
        model: ``small_cnn`` or ``densenet121``; must match the server's persistor model.
        label_task: ``binary``, ``multiclass`` or ``multilabel``.
        classes: class or finding names (multi-class, multi-label), in the model's output order;
            binary: none, or two names in stored order (the label table's 0, then its 1), which the
            label table may also hold as text.
        positive_class: binary only: the positive class's name (default the second class, or
            ``"1"`` without names); labels are flipped when it is stored as 0, so the model's output
            is always P(positive).
        image_size: side of the square model input (DenseNet-121 needs at least 32).
        channels: model input channels (1 for X-rays, 3 for RGB).
        intensity: ``zscore`` (per-image standardization, evens out scanners) or ``none``.
        min_images: fewest usable images each split must keep after quarantine.
        augment: random affine jitter of training images.
        folder: the image set's folder name inside the site's data root.
        operating_point: how each site picks its decision threshold on its validation split
            (:class:`~fedhealth.training.operating_point.OperatingPointConfig`: ``method``
            ``youden`` | ``target_sensitivity`` | ``fixed``, ``target_sensitivity``, ``threshold``,
            ``calibration`` ``none`` | ``temperature`` | ``platt``, ``min_per_class``, ``floor``);
            ``{}`` is Youden's J without calibration.
        norm: ``batch`` or ``group`` (densenet121 with GroupNorm, for DP-SGD); must match the server's
            persistor model.
        act: ``relu`` or ``tanh`` (small_cnn with tanh activations, Papernot et al. 2021, for
            DP-SGD); must match the server's persistor model.
        mixed_precision: float16 autocast and loss scaling where the site trains on CUDA (no effect
            on the CPU; DP-SGD always trains in float32).
    """

    model: str = "small_cnn"
    label_task: str = "binary"
    classes: list[str] = field(default_factory=list)
    positive_class: str = ""
    image_size: int = 28
    channels: int = 1
    intensity: str = "zscore"
    min_images: int = 10
    augment: bool = True
    folder: str = CXR_DATASET_DIR
    operating_point: dict = field(default_factory=dict)
    norm: str = "batch"
    act: str = "relu"
    mixed_precision: bool = True
    name = "dicom"
    steps = ()

    def __post_init__(self) -> None:
        check_norm(self.model, self.norm)
        if not isinstance(self.mixed_precision, bool):
            raise ValueError(f"mixed_precision must be true or false, got {self.mixed_precision!r}.")
        self._model()  # checks name, sizes, norm and activation
        if self.model == "densenet121" and self.image_size < 32:
            raise ValueError(f"densenet121 needs image_size of at least 32, got {self.image_size}.")
        if self.min_images < 1:
            raise ValueError(f"min_images must be at least 1, got {self.min_images}.")
        if not self.folder or Path(self.folder).name != self.folder or self.folder in (".", ".."):
            raise ValueError(
                f"folder must be a plain folder name inside the site's data root, got {self.folder!r}."
            )
        self.pipeline()  # checks size, channels and intensity
        self.operating_point_config()  # checks method, calibration and ranges

    @property
    def spec(self) -> LabelSpec:
        return LabelSpec(self.label_task, tuple(self.classes), self.positive_class)

    def operating_point_config(self) -> OperatingPointConfig:
        return OperatingPointConfig.from_dict(self.operating_point)

    def pipeline(self, *, require_deidentified: bool = True) -> PipelineSettings:
        return PipelineSettings(
            size=self.image_size,
            channels=self.channels,
            intensity=self.intensity,
            min_images=self.min_images,
            require_deidentified=require_deidentified,
        )

    def load_site(self, context: SiteContext) -> ImageSite:
        settings = context.settings
        require = settings.get(C.SITE_REQUIRE_DEIDENTIFIED_KEY, True)
        if not isinstance(require, bool):
            raise SiteDataError(
                f"local/{C.SITE_CONFIG_FILE}: {C.SITE_REQUIRE_DEIDENTIFIED_KEY!r} must be true or false"
            )
        cache = Path(str(settings.get(C.SITE_IMAGE_CACHE_KEY) or C.IMAGE_CACHE_DIR))
        from fedhealth.data.site_data import resolve_data_root

        splits = load_site_images(
            resolve_data_root(context.site_root),
            self.spec,
            self.pipeline(require_deidentified=require),
            cache_root=cache if cache.is_absolute() else context.site_root / cache,
            folder=self.folder,
        )
        site = ImageSite(
            context.name,
            splits,
            self.spec,
            augment=self.augment,
            operating_point=self.operating_point_config(),
            mixed_precision=self.mixed_precision,
        )
        if context.run_dir is not None:
            context.run_dir.mkdir(parents=True, exist_ok=True)
            (context.run_dir / C.QUARANTINE_REPORT_FILE).write_text(json.dumps(site.report(), indent=1))
        return site

    def build_model(self, site: ImageSite, **model_args: object) -> nn.Module:
        return self._model(**model_args)

    def model_from_weights(self, weights: Mapping[str, object], site: ImageSite) -> nn.Module:
        return load_image_weights(self._model(), weights)

    def _model(self, **model_args: object) -> ImageModel:
        return ImageModel(
            self.model,
            self.channels,
            self.spec.n_outputs,
            norm=self.norm,
            act=self.act,
            **model_args,  # type: ignore[arg-type]
        )
