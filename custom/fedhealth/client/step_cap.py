"""The step cap for slow sites: at most ``max_local_steps`` optimizer steps a round.

A site that knows it is slow sets ``max_local_steps`` in its own ``local/fedhealth_site.json``; a job may
also name a cap for every site. The site trains ``min(job's steps, cap)`` and reports the steps it took
(DXO meta ``fedhealth_local_steps``), so that the server's FedNova rule
(:func:`fedhealth.training.robust.fednova`) counts its direction fully instead of dropping it. The runner
adds this plug-in by itself when the site sets a cap and the job lists none: the site decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from fedhealth import constants as C
from fedhealth.client.base import AlgorithmContext, ClientAlgorithm, RoundState, register_algorithm
from fedhealth.training.loops import LocalTrainConfig


def planned_steps(n_train: int, config: LocalTrainConfig) -> int:
    """Optimizer steps a round asks for: ``local_steps``, or batches times epochs."""
    if config.local_steps > 0:
        return config.local_steps
    return math.ceil(n_train / config.batch_size) * config.local_epochs


@register_algorithm
@dataclass
class StepCap(ClientAlgorithm):
    """Caps a round's optimizer steps at the lower of the job's and the site's cap.

    Args:
        max_local_steps: the job's cap (``None``: only the site's own setting).
    """

    max_local_steps: int | None = None
    name = "step_cap"
    _cap: int | None = field(default=None, init=False, repr=False)
    _n_train: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_local_steps is not None and int(self.max_local_steps) < 1:
            raise ValueError(f"step_cap max_local_steps must be at least 1, got {self.max_local_steps}.")
        self._cap = self.max_local_steps

    def start(self, context: AlgorithmContext) -> None:
        site_cap = context.settings.get(C.SITE_MAX_LOCAL_STEPS_KEY)
        caps = [int(c) for c in (self.max_local_steps, site_cap) if c is not None]  # type: ignore[arg-type]
        self._cap = min(caps) if caps else None
        self._n_train = context.site.n_train

    @property
    def cap(self) -> int | None:
        """The cap in force at this site (after :meth:`start`)."""
        return self._cap

    def configure(self, config: LocalTrainConfig, state: RoundState | None) -> LocalTrainConfig:
        planned = planned_steps(self._n_train, config)
        if self._cap is None or planned <= self._cap:
            return config
        if state is not None:
            state.notes.append(
                f"{C.SITE_MAX_LOCAL_STEPS_KEY}={self._cap} caps local training at {self._cap} "
                f"of {planned} steps"
            )
        # Epochs become steps only when the cap binds: the step loop draws the same shuffled batches.
        return replace(config, local_steps=self._cap)
