"""DP-SGD for a site (heart table or image arrays): the one place the executor and the twin build it.

Turns a site's local-training settings (batch size, local steps or epochs, optimizer) into a
:class:`~fedhealth.privacy.dp_sgd.PrivateTrainer` sized for the whole job, so the FLARE executor and
:func:`fedhealth_tools.training.federation.run_federation` run the same private code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
from torch import nn

from fedhealth.privacy.dp_config import DPConfig
from fedhealth.privacy.dp_sgd import PrivateTrainer


class TrainArrays(Protocol):
    """A site that hands out its ``(x, y)`` arrays: :class:`~fedhealth.training.heart_site.HeartSite`, or
    :class:`~fedhealth.tasks.imaging.ImageSite` (images ``(n, C, S, S)``,
    binary labels).
    """

    def arrays(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]: ...  # noqa: D102


def steps_per_round(n: int, *, batch_size: int, local_steps: int = 0, local_epochs: int = 1) -> int:
    """DP-SGD steps a round: ``local_steps``, or ``local_epochs`` passes of ``ceil(n / batch)`` batches."""
    return local_steps if local_steps > 0 else local_epochs * math.ceil(n / batch_size)


def site_trainer(
    model: nn.Module,
    site: TrainArrays,
    dp: DPConfig,
    *,
    local: Mapping[str, object],
    rounds: int,
    state_dir: Path | None = None,
    budget: float | None = None,
    seed: int | None = 0,
) -> PrivateTrainer:
    """The site's DP-SGD trainer for the job (build it once, after the site has its scaling).

    Args:
        model: a model of the job's architecture.
        site: the site (a heart site scaled; an image site with its images ready).
        dp: the job's DP settings; ``dp.rounds`` overrides ``rounds`` when set.
        local: the executor's local-training settings (``batch_size``, ``local_steps``, ``local_epochs``,
            ``mu``, ``optimizer``, ``weight_decay``).
        rounds: the job's number of rounds (the server says it with each task).
        state_dir: the site's run folder, for the accountant and the ledger.
        budget: the site's own ε cap (``local/fedhealth_site.json``), if lower than the job's target.
        seed: seeds sampling and noise.
    """
    if float(local.get("mu", 0.0) or 0.0) > 0:  # type: ignore[arg-type]
        raise ValueError(
            "FedProx (mu > 0) is not combined with DP-SGD here: the proximal term's gradient would bypass "
            "per-example clipping. Set mu=0 in a DP job."
        )
    x, y = site.arrays("train")
    batch = int(local.get("batch_size", 8))  # type: ignore[arg-type]
    steps = steps_per_round(
        len(y),
        batch_size=batch,
        local_steps=int(local.get("local_steps", 0) or 0),  # type: ignore[arg-type]
        local_epochs=int(local.get("local_epochs", 1) or 1),  # type: ignore[arg-type]
    )
    return PrivateTrainer(
        model,
        x,
        y,
        dp,
        batch_size=batch,
        steps_per_round=steps,
        rounds=dp.rounds or rounds,
        optimizer=str(local.get("optimizer", "sgd")),
        weight_decay=float(local.get("weight_decay", 0.0) or 0.0),  # type: ignore[arg-type]
        state_dir=state_dir,
        budget=budget,
        seed=seed,
    )
