"""DP-SGD at the site (Abadi et al. 2016) through Opacus: one private trainer for the whole job.

Replaces the task's local training with :class:`fedhealth.privacy.dp_sgd.PrivateTrainer`, sized for the
job's rounds, with the site's own ε cap (``dp_max_epsilon`` in its settings); each round's ledger entry
travels with the update. Opacus loads only in jobs that name this plug-in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fedhealth import constants as C
from fedhealth.client.base import AlgorithmContext, ClientAlgorithm, RoundState, named, register_algorithm
from fedhealth.privacy.dp_config import DPConfig, check_site_budget


@register_algorithm
@dataclass
class DpSgd(ClientAlgorithm):
    """DP-SGD settings (:class:`~fedhealth.privacy.dp_config.DPConfig` fields are its options)."""

    dp: DPConfig
    name = "dp_sgd"
    trains = True
    _context: AlgorithmContext | None = field(default=None, init=False, repr=False)
    _budget: float | None = field(default=None, init=False, repr=False)
    _trainer: object = field(default=None, init=False, repr=False)

    @classmethod
    def from_args(cls, args: Mapping[str, object]) -> DpSgd:
        return cls(DPConfig.from_dict(args))

    def check(self, others: Sequence[ClientAlgorithm], local: Mapping[str, object]) -> None:
        clash = named(others, "fedprox", "scaffold")
        if clash:
            raise ValueError(
                f"DP-SGD cannot run with {clash}: a proximal term's or a control variate's gradient would "
                "bypass per-example clipping."
            )
        self.dp.check_batch(int(local.get("batch_size", 0)))  # type: ignore[arg-type]

    def check_site(self, site) -> None:
        if not site.binary:
            raise ValueError("DP-SGD here trains with a binary loss; this task's labels are not binary.")

    def start(self, context: AlgorithmContext) -> None:
        self._context = context
        self._budget = check_site_budget(
            context.settings.get(C.SITE_DP_MAX_EPSILON_KEY), f"local/{C.SITE_CONFIG_FILE}"
        )

    def train(self, state: RoundState) -> dict:
        if self._trainer is None:
            from fedhealth.privacy.site_dp import site_trainer  # Opacus loads only here

            config = state.config
            self._trainer = site_trainer(
                state.model,
                self._context.site,
                self.dp,
                local={
                    "batch_size": config.batch_size,
                    "local_steps": config.local_steps,
                    "local_epochs": config.local_epochs,
                    "optimizer": config.optimizer,
                    "weight_decay": config.weight_decay,
                },
                rounds=state.rnd.num_rounds,
                state_dir=self._context.run_dir,
                budget=self._budget,
                seed=self._context.seed,
            )
            state.notes.extend(f"DP-SGD changed the model for Opacus: {c}" for c in self._trainer.changes)
        stats = self._trainer.train_round(state.model, lr=state.lr, round_index=state.rnd.round_index)
        state.notes.append(f"DP-SGD ledger {stats[C.M_PRIVACY]}")
        return stats

    @property
    def trainer(self):
        """The site's :class:`~fedhealth.privacy.dp_sgd.PrivateTrainer` (``None`` before the first round)."""
        return self._trainer
