"""Site executor for the chest X-ray jobs: train, validate, submit_model on the site's own DICOM files.

A thin FLARE layer over :mod:`fedhealth.imaging`: on start it scans the site's ``cxr/{train,val,test}``
folders (its own ``data_root`` setting), quarantines unusable files, audits PHI (and refuses
identified data when the site requires de-identification, the default), and decodes through the
cache. Rounds report their figures on the validation split, the cross-site ``validate`` task on the
test split with the same metric keys as the heart jobs (``accuracy``, ``auc``, ``loss``,
``intervals``) plus MONAI per-label AUC for multi-class and multi-label tasks. Only weights and
aggregate numbers leave the site; the quarantine report stays in the site's run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from nvflare.apis.dxo import DXO, DataKind, MetaKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AppConstants

from fedhealth import constants as C
from fedhealth.data.site_data import resolve_data_root, site_settings
from fedhealth.executors.site_executor import Handler, SiteExecutor, clean_metrics
from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import (
    binary_view,
    evaluate_images,
    metrics_from_probs,
    predict_images,
    train_images,
)
from fedhealth.imaging.site import PipelineSettings, load_site_images
from fedhealth.models.image_model import ImageModel, load_image_weights
from fedhealth.models.state import to_numpy
from fedhealth.training.loops import LocalTrainConfig, local_settings
from fedhealth.training.site_metrics import evaluate_with_intervals


class CxrExecutor(SiteExecutor):
    """Runs the site's part of a chest X-ray job.

    Args:
        model: ``small_cnn`` or ``densenet121``; must match the server's persistor model.
        label_task: ``binary``, ``multiclass`` or ``multilabel``.
        classes: class or finding names (multi-class, multi-label), in the model's output order.
        image_size: side of the square model input (DenseNet-121 needs at least 32).
        channels: model input channels (1 for X-rays, 3 for RGB).
        intensity: ``zscore`` (per-image standardization, evens out scanners) or ``none``.
        min_images: fewest usable images each split must keep after quarantine.
        batch_size, local_steps, local_epochs, mu, optimizer, weight_decay: local training
            (:class:`fedhealth.training.loops.LocalTrainConfig`; ``mu > 0`` is FedProx).
        augment: random affine jitter of training images.
        seed: seed of shuffling and augmentation.
        n_bootstrap: bootstrap resamples for the 95% intervals of the validate task.
        stream_metrics: stream per-round curves to the server (TensorBoard).
    """

    def __init__(
        self,
        *,
        model: str = "small_cnn",
        label_task: str = "binary",
        classes: list[str] | None = None,
        image_size: int = 28,
        channels: int = 1,
        intensity: str = "zscore",
        min_images: int = 10,
        batch_size: int = 64,
        local_steps: int = 0,
        local_epochs: int = 1,
        mu: float = 0.0,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        augment: bool = True,
        seed: int = 0,
        n_bootstrap: int = 1000,
        stream_metrics: bool = True,
    ) -> None:
        super().__init__(stream_metrics=stream_metrics)
        self.spec = LabelSpec(label_task, tuple(classes or ()))
        self.local = local_settings(
            batch_size=batch_size,
            local_steps=local_steps,
            local_epochs=local_epochs,
            mu=mu,
            optimizer=optimizer,
            weight_decay=weight_decay,
        )
        ImageModel(model, channels, self.spec.n_outputs)  # checks the name and sizes
        if model == "densenet121" and image_size < 32:
            raise ValueError(f"densenet121 needs image_size of at least 32, got {image_size}.")
        if min_images < 1:
            raise ValueError(f"min_images must be at least 1, got {min_images}.")
        self.model_name = model
        self.image_size = image_size
        self.channels = channels
        self.intensity = intensity
        PipelineSettings(size=image_size, channels=channels, intensity=intensity)  # checks them
        self.min_images = min_images
        self.augment = augment
        self.seed = seed
        self.n_bootstrap = n_bootstrap
        self._splits: dict | None = None
        self._generator: torch.Generator | None = None

    # ----------------------------------------------------------------------------- site data
    def load_site(self, fl_ctx: FLContext, site_root: Path) -> None:
        settings = site_settings(site_root)
        require = settings.get(C.SITE_REQUIRE_DEIDENTIFIED_KEY, True)
        if not isinstance(require, bool):
            raise ValueError(
                f"local/{C.SITE_CONFIG_FILE}: {C.SITE_REQUIRE_DEIDENTIFIED_KEY!r} must be true or false"
            )
        cache = Path(settings.get(C.SITE_IMAGE_CACHE_KEY) or C.IMAGE_CACHE_DIR)
        pipeline = PipelineSettings(
            size=self.image_size,
            channels=self.channels,
            intensity=self.intensity,
            min_images=self.min_images,
            require_deidentified=require,
        )
        self._splits = load_site_images(
            resolve_data_root(site_root),
            self.spec,
            pipeline,
            cache_root=cache if cache.is_absolute() else site_root / cache,
        )
        self._generator = torch.Generator().manual_seed(self.seed)
        report = {
            name: {"quarantine": s.quarantine.as_dict(), "phi": s.phi} for name, s in self._splits.items()
        }
        if self._run_dir is not None:
            self._run_dir.mkdir(parents=True, exist_ok=True)
            (self._run_dir / C.QUARANTINE_REPORT_FILE).write_text(json.dumps(report, indent=1))
        sizes = ", ".join(f"{n}={len(s)}" for n, s in self._splits.items())
        counts = {n: s.quarantine.counts() for n, s in self._splits.items() if s.quarantine.entries}
        self.log_info(fl_ctx, f"images loaded: {sizes}; quarantined per reason: {counts or 'none'}")

    def release_site(self) -> None:
        self._splits = None

    def n_train(self) -> int:
        return len(self._splits["train"])

    def task_handlers(self) -> dict[str, Handler]:
        return {C.TASK_TRAIN: self._train, C.TASK_VALIDATE: self._validate}

    # ----------------------------------------------------------------------------- tasks
    def _model_from(self, shareable: Shareable) -> tuple[ImageModel, DXO]:
        dxo = self.received_weights(shareable)
        model = ImageModel(self.model_name, self.channels, self.spec.n_outputs)
        return load_image_weights(model, dxo.data), dxo

    def _sizes(self) -> dict:
        quarantined = sum(len(s.quarantine.entries) for s in self._splits.values())
        return {
            C.M_N_TRAIN: len(self._splits["train"]),
            C.M_N_TEST: len(self._splits["test"]),
            C.M_N_QUARANTINED: quarantined,
        }

    def _evaluate(self, model: ImageModel, split: str) -> dict:
        data = self._splits[split]
        return clean_metrics(evaluate_images(model, data.x, data.y, self.spec))

    def _train(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        model, dxo = self._model_from(shareable)
        lr = self.learning_rate(dxo)
        current_round = shareable.get_header(AppConstants.CURRENT_ROUND, 0)
        received = self._evaluate(model, "val")
        train = self._splits["train"]
        stats = train_images(
            model,
            train.x,
            train.y,
            LocalTrainConfig(lr=float(lr), **self.local),
            self.spec,
            augment=self.augment,
            generator=self._generator,
            seed=self.seed + int(current_round),
        )
        self._local_weights = to_numpy(model)
        local = self._evaluate(model, "val")
        metrics = {
            **{f"global_{k}": received[k] for k in (C.M_ACCURACY, C.M_AUC, C.M_LOSS)},
            C.M_TRAIN_LOSS: stats[C.M_TRAIN_LOSS],
            C.M_STEPS: int(stats[C.M_STEPS]),
            C.M_LOCAL_LOSS: local[C.M_LOSS],
            C.M_IMAGES_PER_S: stats[C.M_IMAGES_PER_S],
            **self._sizes(),
            "lr": float(lr),
            "round": current_round,
        }
        self.log_info(
            fl_ctx,
            f"round {current_round}: lr={lr:.5g} train_loss={stats[C.M_TRAIN_LOSS]:.4f} "
            f"val_loss(received)={received[C.M_LOSS]:.4f} ({stats[C.M_IMAGES_PER_S]:.0f} images/s)",
        )
        self.stream(fl_ctx, current_round, metrics)
        out = DXO(data_kind=DataKind.WEIGHTS, data=self._local_weights)
        out.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, len(train))  # FedAvg weight = images
        out.set_meta_prop(MetaKey.INITIAL_METRICS, received.get(C.M_ACCURACY))
        out.set_meta_prop(C.META_LOCAL_STEPS, int(stats[C.M_STEPS]))
        out.set_meta_prop(C.META_SITE_METRICS, metrics)
        return out.to_shareable()

    def _validate(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        model, _ = self._model_from(shareable)
        owner = shareable.get_header(AppConstants.MODEL_OWNER, "?")
        test = self._splits["test"]
        probs = predict_images(model, test.x, self.spec)
        metrics = {**clean_metrics(metrics_from_probs(test.y, probs, self.spec)), **self._sizes()}
        labels, scores = binary_view(test.y, probs, self.spec)
        metrics[C.M_INTERVALS] = evaluate_with_intervals(labels, scores, n_bootstrap=self.n_bootstrap)
        self.log_info(fl_ctx, f"validated model of {owner}: accuracy={metrics[C.M_ACCURACY]:.4f}")
        return DXO(data_kind=DataKind.METRICS, data=metrics).to_shareable()
