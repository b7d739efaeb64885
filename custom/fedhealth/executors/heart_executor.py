"""Site executor for the heart-disease jobs: federated statistics, train, validate, submit_model.

A thin FLARE layer over :class:`fedhealth.training.heart_site.HeartSite`: it reads the site's
own data folder (the site's setting, never the job's), converts DXOs, and calls the core. Only
model weights, aggregate metrics and feature moments leave the site. A data problem fails the task
with a reply whose ``fedhealth_error`` header names the file and column, so the server can say
which site failed and why.

A site that knows it is slow sets its maximum local steps, ``max_local_steps``, in its
``local/fedhealth_site.json``; it then trains ``min(job's steps, cap)`` optimizer steps a round and
reports the steps it took (DXO meta ``fedhealth_local_steps``), so that the server's FedNova rule
(:func:`fedhealth.training.robust.fednova`) counts its direction fully instead of dropping or
under-weighting it.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.app_common.app_constant import AppConstants

from fedhealth import constants as C
from fedhealth.data.site_data import SiteDataError, load_site, resolve_data_root, site_settings
from fedhealth.executors.site_executor import SiteExecutor, clean_metrics
from fedhealth.models.state import tabular_from_weights, to_numpy
from fedhealth.privacy.dp_config import DPConfig, check_site_budget
from fedhealth.training.heart_site import SCALING_MODES, HeartSite
from fedhealth.training.loops import LocalTrainConfig, local_settings, predict
from fedhealth.training.site_metrics import evaluate_with_intervals
from fedhealth.training.warmup import warm_up_in_background


class HeartExecutor(SiteExecutor):
    """Runs the site's part of a heart-disease job.

    Args:
        scaling: ``"global"`` (federated statistics, the kit's default) or ``"site"`` (FLamby).
        chol_zero_as_missing: treat a recorded cholesterol of 0 as missing, with an indicator.
        batch_size: local mini-batch size (at least the site's ``min_batch_size``, 16 by default).
        local_steps: optimizer steps per round (0: use ``local_epochs``).
        local_epochs: passes over the local data per round. Either workload is capped by the site's own
            ``max_local_steps`` setting, if it has one (``local/fedhealth_site.json``).
        mu: FedProx proximal weight (0 = FedAvg).
        optimizer: ``"sgd"`` or ``"adam"``.
        weight_decay: L2 penalty.
        seed: seed of the local shuffling.
        n_bootstrap: bootstrap resamples for the 95% intervals of the validate task.
        stream_metrics: stream per-round training and validation loss to the server (TensorBoard).
        send_weight_diff: send the update (local minus received weights, ``WEIGHT_DIFF``) instead
            of the local weights; top-k compression needs it, and the server's aggregator must
            then expect ``WEIGHT_DIFF``.
        dp: DP-SGD settings (:class:`fedhealth.privacy.dp_config.DPConfig` fields); ``None`` trains without.
    """

    def __init__(
        self,
        *,
        scaling: str = "global",
        chol_zero_as_missing: bool = True,
        batch_size: int = 16,
        local_steps: int = 0,
        local_epochs: int = 1,
        mu: float = 0.0,
        optimizer: str = "sgd",
        weight_decay: float = 0.0,
        seed: int = 0,
        n_bootstrap: int = 1000,
        stream_metrics: bool = True,
        send_weight_diff: bool = False,
        dp: dict | None = None,
    ) -> None:
        super().__init__(stream_metrics=stream_metrics)
        self.local = local_settings(
            batch_size=batch_size,
            local_steps=local_steps,
            local_epochs=local_epochs,
            mu=mu,
            optimizer=optimizer,
            weight_decay=weight_decay,
        )
        if scaling not in SCALING_MODES:
            raise ValueError(f"scaling must be one of {SCALING_MODES}, not {scaling!r}.")
        self.scaling = scaling
        self.dp = DPConfig.from_dict(dp) if dp else None
        if self.dp is not None:
            self.dp.check_batch(batch_size)
            if mu > 0:
                raise ValueError("FedProx (mu > 0) cannot be combined with DP-SGD; set mu=0 in a DP job.")
        self._private = None  # the site's DP-SGD trainer, built at its first train task
        self._dp_budget: float | None = None  # the site's own epsilon cap, local/fedhealth_site.json
        self.chol_zero_as_missing = chol_zero_as_missing
        self.seed = seed
        self.n_bootstrap = n_bootstrap
        self.send_weight_diff = send_weight_diff
        self._site: HeartSite | None = None
        self._max_local_steps: int | None = None  # the site's own cap, from local/fedhealth_site.json
        self._metadata: dict = {}  # the site's declared non-PHI description (clustered FL)
        self._generator = None

    # ----------------------------------------------------------------------------- SiteExecutor
    def load_site(self, fl_ctx: FLContext, site_root: Path) -> None:
        import torch

        self._generator = torch.Generator().manual_seed(self.seed)
        warm_up_in_background()  # torch's first-optimizer imports, off the first round's critical path
        settings = site_settings(site_root)
        self._max_local_steps = settings.get(C.SITE_MAX_LOCAL_STEPS_KEY)
        self._dp_budget = check_site_budget(
            settings.get(C.SITE_DP_MAX_EPSILON_KEY), f"local/{C.SITE_CONFIG_FILE}"
        )
        metadata = settings.get(C.SITE_METADATA_KEY) or {}
        if not isinstance(metadata, dict):
            raise SiteDataError(f"local/{C.SITE_CONFIG_FILE}: '{C.SITE_METADATA_KEY}' must be a JSON object")
        self._metadata = metadata
        train, test = load_site(resolve_data_root(site_root))
        self._site = HeartSite(
            fl_ctx.get_identity_name(),
            train,
            test,
            chol_zero_as_missing=self.chol_zero_as_missing,
            scaling=self.scaling,
        )
        self._restore_scaling()
        self.log_info(fl_ctx, f"site data loaded: n_train={len(train)} n_test={len(test)}")
        if self._max_local_steps is not None:
            self.log_info(
                fl_ctx,
                f"site setting {C.SITE_MAX_LOCAL_STEPS_KEY}={self._max_local_steps}: at most "
                f"{self._max_local_steps} local steps per round (job asks for {self._planned_steps()})",
            )

    def release_site(self) -> None:
        self._site = None

    def n_train(self) -> int:
        return self._site.n_train

    def round_steps(self) -> int:
        """The job's steps, capped by the site's ``max_local_steps`` (what :meth:`_train` will take)."""
        workload = self._workload()
        return workload["local_steps"] if workload["local_steps"] > 0 else self._planned_steps()

    def task_handlers(self) -> dict:
        return {
            C.TASK_FED_STATS: self._fed_stats,
            C.TASK_SET_SCALING: self._set_scaling,
            C.TASK_TRAIN: self._train,
            C.TASK_VALIDATE: self._validate,
        }

    # ----------------------------------------------------------------------------- tasks
    def _fed_stats(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        moments = self._site.moments()
        data = {**moments, C.S_FEATURES: self._site.feature_names, C.M_N_TRAIN: self._site.n_train}
        self.log_info(fl_ctx, f"sending feature moments of {self._site.n_train} training rows")
        return DXO(data_kind=DataKind.COLLECTION, data=data).to_shareable()

    def _set_scaling(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        stats = from_shareable(shareable).data
        if list(stats.get(C.S_FEATURES, [])) != self._site.feature_names:
            raise ValueError("the global scaling was computed for other features than this site encodes")
        self._site.set_scaling(stats)
        if self._run_dir is not None:
            (self._run_dir / C.SCALING_STATE_FILE).write_text(json.dumps(stats))
        return make_reply(ReturnCode.OK)

    def _restore_scaling(self) -> None:
        """Reload the global scaling after a site restart within the same job."""
        path = self._run_dir / C.SCALING_STATE_FILE if self._run_dir else None
        if path is not None and path.is_file() and self._site is not None:
            self._site.set_scaling(json.loads(path.read_text()))

    def _model_from(self, shareable: Shareable):
        dxo = self.received_weights(shareable)
        model = tabular_from_weights(dxo.data)
        if model.in_features != self._site.n_features:
            raise ValueError(
                f"the model takes {model.in_features} features but this site encodes {self._site.n_features} "
                f"(chol_zero_as_missing={self.chol_zero_as_missing}); the job's model and executor disagree"
            )
        return model, dxo

    def _train(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        started = time.perf_counter()  # the site's own compute time, for the round-overhead record
        model, dxo = self._model_from(shareable)
        lr = self.learning_rate(dxo)
        current_round = shareable.get_header(AppConstants.CURRENT_ROUND, 0)
        received = clean_metrics(self._site.evaluate(model))
        workload = self._workload()
        if workload["local_steps"] != self.local["local_steps"]:
            self.log_info(
                fl_ctx,
                f"round {current_round}: {C.SITE_MAX_LOCAL_STEPS_KEY}={self._max_local_steps} caps local "
                f"training at {workload['local_steps']} of {self._planned_steps()} steps",
            )
        if self.dp is not None:
            stats = self._private_round(model, float(lr), int(current_round), shareable, fl_ctx)
        else:
            with self._train_context(model):
                stats = self._site.train_round(
                    model, LocalTrainConfig(lr=float(lr), **workload), generator=self._generator
                )
        steps = int(stats[C.M_STEPS])
        self._local_weights = to_numpy(model)
        local = clean_metrics(self._site.evaluate(model))
        metrics = {
            **{f"global_{k}": v for k, v in received.items() if k not in (C.M_N_TRAIN, C.M_N_TEST)},
            C.M_TRAIN_LOSS: stats[C.M_TRAIN_LOSS],
            C.M_STEPS: steps,
            C.M_LOCAL_LOSS: local[C.M_LOSS],
            C.M_N_TRAIN: self._site.n_train,
            C.M_N_TEST: self._site.n_test,
            "lr": float(lr),
            "round": current_round,
            C.M_TASK_S: time.perf_counter() - started,
        }
        if C.M_PRIVACY in stats:
            metrics[C.M_PRIVACY] = stats[C.M_PRIVACY]  # the round's ledger entry travels with the update
        self.log_info(
            fl_ctx,
            f"round {current_round}: lr={lr:.5g} train_loss={stats[C.M_TRAIN_LOSS]:.4f} "
            f"val_loss(received)={received[C.M_LOSS]:.4f}",
        )
        self.stream(fl_ctx, current_round, metrics)
        if self.send_weight_diff:
            update = {k: v - np.asarray(dxo.data[k], dtype=v.dtype) for k, v in self._local_weights.items()}
            out = DXO(data_kind=DataKind.WEIGHT_DIFF, data=update)
        else:
            out = DXO(data_kind=DataKind.WEIGHTS, data=self._local_weights)
        out.set_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND, self._site.n_train)  # FedAvg weight = samples
        out.set_meta_prop(MetaKey.INITIAL_METRICS, received.get(C.M_ACCURACY))
        out.set_meta_prop(C.META_LOCAL_STEPS, steps)  # FedNova's tau_i
        out.set_meta_prop(C.META_SITE_METRICS, metrics)
        if self._metadata:
            out.set_meta_prop(C.META_SITE_METADATA, self._metadata)  # declared by the site; no patient data
        return out.to_shareable()

    def _private_round(
        self, model, lr: float, current_round: int, shareable: Shareable, fl_ctx: FLContext
    ) -> dict:
        """DP-SGD (fedhealth.privacy): one trainer for the whole job; declines past the site's budget."""
        if self._private is None:
            from fedhealth.privacy.site_dp import site_trainer  # Opacus loads only in DP jobs

            rounds = int(shareable.get_header(AppConstants.NUM_ROUNDS, 0) or 0)
            self._private = site_trainer(
                model,
                self._site,
                self.dp,
                local=self._workload(),
                rounds=rounds,
                state_dir=self._run_dir,
                budget=self._dp_budget,
                seed=None,
            )
            for change in self._private.changes:
                self.log_warning(fl_ctx, f"DP-SGD changed the model for Opacus: {change}")
        stats = self._private.train_round(model, lr=lr, round_index=current_round)
        self.log_info(fl_ctx, f"round {current_round}: DP-SGD ledger {stats[C.M_PRIVACY]}")
        return stats

    def _train_context(self, model) -> AbstractContextManager:
        """Wraps the local training; a subclass hook (SCAFFOLD's gradient correction)."""
        return nullcontext()

    def _planned_steps(self) -> int:
        """Optimizer steps the job asks for per round: ``local_steps``, or batches times epochs."""
        if self.local["local_steps"] > 0:
            return self.local["local_steps"]
        return math.ceil(self._site.n_train / self.local["batch_size"]) * self.local["local_epochs"]

    def _workload(self) -> dict:
        """This round's local training arguments: the job's, with steps capped by the site's setting.

        Epochs become ``ceil(n_train / batch_size) * epochs`` steps only when the cap binds; the
        step loop then draws the same shuffled batches that the epoch loop would have begun with.
        """
        cap = self._max_local_steps
        if cap is None or self._planned_steps() <= cap:
            return dict(self.local)
        return {**self.local, "local_steps": cap}

    def _validate(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        model, _ = self._model_from(shareable)
        owner = shareable.get_header(AppConstants.MODEL_OWNER, "?")
        metrics = clean_metrics(self._site.evaluate(model))
        x, y = self._site.arrays("test")
        metrics[C.M_INTERVALS] = evaluate_with_intervals(y, predict(model, x), n_bootstrap=self.n_bootstrap)
        self.log_info(fl_ctx, f"validated model of {owner}: accuracy={metrics[C.M_ACCURACY]:.4f}")
        return DXO(data_kind=DataKind.METRICS, data=metrics).to_shareable()
