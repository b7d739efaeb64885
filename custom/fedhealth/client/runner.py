"""One local round of any task with any list of client algorithms: the FLARE executor's core and the loop's.

:class:`SiteRunner` holds a loaded site, the job's local-training settings and its algorithms, and runs a
round: build the received model, evaluate it, configure, train (the task's loop or DP-SGD), evaluate the
result, and let each algorithm change what is sent. It knows nothing about FLARE; the executor converts
DXOs to a :class:`~fedhealth.client.base.RoundInput` and the :class:`~fedhealth.client.base.RoundState`
back to DXOs, and the in-process loop calls it directly, so the two cannot drift.

It is also where a site's metrics are released: the round metrics and the validation pass through
:mod:`fedhealth.privacy.released_metrics` under the site's minimum cell (its own
``min_cell_count`` setting, which a job may only raise), so every task and algorithm withholds a
metric of a small cell the same way.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch
from torch import nn

from fedhealth import constants as C
from fedhealth.client.base import (
    AlgorithmContext,
    ClientAlgorithm,
    RoundInput,
    RoundState,
    build_algorithms,
    copy_weights,
)
from fedhealth.client.step_cap import StepCap, planned_steps
from fedhealth.models.state import to_numpy
from fedhealth.privacy.released_metrics import release_round, release_validation
from fedhealth.privacy.small_cells import class_counts, effective_min_cell
from fedhealth.tasks.base import Site, Task
from fedhealth.training.loops import LocalTrainConfig, local_settings
from fedhealth.training.metrics import clean_metrics

REPORTED = (C.M_ACCURACY, C.M_AUC, C.M_LOSS)


class SiteRunner:
    """A site's rounds for one job.

    Args:
        task: the job's task.
        site: the site, loaded by ``task``.
        algorithms: the job's ``algorithms`` list (names or ``{"name", "args"}``); each runner builds its
            own plug-ins, which keep per-site state (SCAFFOLD's variate, Ditto's personal model).
        local: local-training settings (``batch_size``, ``local_steps``, ``local_epochs``, ``optimizer``,
            ``weight_decay``).
        seed: seed of shuffling (and of augmentation: round ``r`` uses ``seed + r``).
        shuffle_seed: seed of shuffling when it differs from ``seed`` (the in-process loop gives each site
            its own shuffling while the augmentation follows the round, as the benchmarks always did).
        settings: the site's own merged settings (its step cap, its ε cap).
        run_dir: the job's run folder at the site (error-feedback memory, ledgers, personal models).
        dp_seed: seeds DP noise (the in-process loop); ``None`` draws fresh noise (a real site).
        min_cell: the job's minimum cell count; the site applies the larger of it and its own
            ``min_cell_count`` setting (default 5).

    Raises:
        SiteDataError: the site's ``min_cell_count`` setting is not a whole number >= 1.
    """

    def __init__(
        self,
        task: Task,
        site: Site,
        *,
        algorithms: Sequence[str | Mapping[str, object]] = (),
        local: Mapping[str, object],
        seed: int = 0,
        settings: Mapping[str, object] | None = None,
        run_dir: Path | None = None,
        dp_seed: int | None = None,
        shuffle_seed: int | None = None,
        min_cell: int | None = None,
    ) -> None:
        self.task = task
        self.site = site
        self.local = local_settings(**local)
        self.seed = seed
        self.settings = dict(settings or {})
        self.min_cell = effective_min_cell(self.settings, min_cell)
        self.algorithms: list[ClientAlgorithm] = build_algorithms(algorithms, self.local)
        if self.settings.get(C.SITE_MAX_LOCAL_STEPS_KEY) is not None and not any(
            isinstance(a, StepCap) for a in self.algorithms
        ):
            self.algorithms.append(StepCap())  # the site's own cap applies whatever the job lists
        for algorithm in self.algorithms:
            algorithm.check_site(site)
        self.generator = torch.Generator().manual_seed(seed if shuffle_seed is None else shuffle_seed)
        context = AlgorithmContext(
            task=task,
            site=site,
            local=self.local,
            settings=self.settings,
            run_dir=run_dir,
            generator=self.generator,
            seed=dp_seed,
        )
        for algorithm in self.algorithms:
            algorithm.start(context)
        self.local_weights: dict | None = None  # the last round's local model (submit_model)

    def algorithm(self, name: str) -> ClientAlgorithm | None:
        """The plug-in ``name`` if the job uses it."""
        return next((a for a in self.algorithms if a.name == name), None)

    def round_config(self, lr: float, state: RoundState | None = None) -> LocalTrainConfig:
        """The round's local-training settings after every algorithm's ``configure``."""
        config = LocalTrainConfig(lr=lr, **self.local)  # type: ignore[arg-type]
        for algorithm in self.algorithms:
            config = algorithm.configure(config, state)  # type: ignore[arg-type]
        return config

    def round_steps(self) -> int:
        """Optimizer steps a round takes here (the job's workload under any cap)."""
        return planned_steps(self.site.n_train, self.round_config(1.0))

    def round_lr(self, rnd: RoundInput) -> float:
        """The round's learning rate: an algorithm's own schedule, else the server's."""
        for algorithm in self.algorithms:
            lr = algorithm.round_lr(rnd)
            if lr is not None:
                return float(lr)
        if rnd.lr is None:
            raise ValueError(
                "the train task carries no learning rate; the server must use "
                "fedhealth.shareables.scheduled_generator.ScheduledShareableGenerator"
            )
        return float(rnd.lr)

    def model(self, weights: Mapping[str, object]) -> nn.Module:
        """The model for ``weights``, checked against this site's inputs."""
        return self.task.model_from_weights(weights, self.site)

    def run_round(self, rnd: RoundInput) -> RoundState:
        """Train one round; the state holds what to send, the extras and the metrics."""
        started = time.perf_counter()
        model = self.model(rnd.weights)
        lr = self.round_lr(rnd)
        received = self.site.evaluate(model, self.site.round_split)
        state = RoundState(
            rnd=rnd,
            model=model,
            received=copy.deepcopy(model),
            start=copy_weights(model),
            lr=lr,
            config=LocalTrainConfig(lr=lr, **self.local),  # type: ignore[arg-type]
        )
        state.config = self.round_config(lr, state)
        for algorithm in self.algorithms:
            algorithm.before_round(state)
        state.stats = self._train(state)
        self.local_weights = to_numpy(model)
        state.update = dict(self.local_weights)
        local = self.site.evaluate(model, self.site.round_split)
        state.metrics = {
            **{f"global_{k}": received.get(k) for k in REPORTED},
            C.M_TRAIN_LOSS: state.stats[C.M_TRAIN_LOSS],
            C.M_STEPS: int(state.stats[C.M_STEPS]),
            C.M_LOCAL_LOSS: local.get(C.M_LOSS),
            **self.site.sizes(),
            C.M_EVAL_SPLIT: self.site.round_split,
            "lr": lr,
            "round": rnd.round_index,
        }
        for key in (C.M_IMAGES_PER_S, C.M_PRIVACY):
            if key in state.stats:
                state.metrics[key] = state.stats[key]
        for algorithm in self.algorithms:
            algorithm.after_round(state)
        state.metrics = self.release_round(state.metrics)
        state.metrics[C.M_TASK_S] = time.perf_counter() - started
        return state

    def release_round(self, metrics: Mapping[str, object]) -> dict:
        """The round's metrics as they may leave the site (small cells withheld, NaN as None)."""
        _, labels = self.site.arrays(self.site.round_split)
        return release_round(
            clean_metrics(dict(metrics)),
            pairs=class_counts(labels),
            n_split=len(labels),
            n_train=self.site.n_train,
            min_cell=self.min_cell,
        )

    def _train(self, state: RoundState) -> dict:
        trainer = next((a for a in self.algorithms if a.trains), None)
        if trainer is not None:
            return trainer.train(state)  # type: ignore[return-value]
        with ExitStack() as stack:
            for algorithm in self.algorithms:
                stack.enter_context(algorithm.train_context(state))
            return self.site.train(
                state.model, state.config, generator=self.generator, seed=self.seed + state.rnd.round_index
            )

    def validate(self, weights: Mapping[str, object], *, n_bootstrap: int) -> dict:
        """The cross-site ``validate`` task on this site's test split, small cells withheld."""
        metrics = clean_metrics(self.site.validate(self.model(weights), n_bootstrap=n_bootstrap))
        _, labels = self.site.arrays("test")
        return release_validation(metrics, pairs=class_counts(labels), n=len(labels), min_cell=self.min_cell)
