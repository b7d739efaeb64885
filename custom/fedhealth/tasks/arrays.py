"""Round steps shared by the tasks whose sites hold feature matrices (heart, tabular).

A site with ``arrays(split)`` and ``evaluate(model, split)`` trains and validates the same way
whatever built its matrix; these functions are that way, so each task's site only says where its
arrays come from.
"""

from __future__ import annotations

import torch
from torch import nn

from fedhealth import constants as C
from fedhealth.tasks.base import Site
from fedhealth.training.loops import LocalTrainConfig, predict, train_local
from fedhealth.training.site_metrics import evaluate_with_intervals


def train_on_arrays(
    site: Site,
    model: nn.Module,
    config: LocalTrainConfig,
    *,
    generator: torch.Generator,
    anchor: list[torch.Tensor] | None = None,
) -> dict[str, float]:
    """One round of the kit's local loop on the site's training matrix (``anchor``: FedProx's weights)."""
    x, y = site.arrays("train")
    return train_local(model, x, y, config, global_params=anchor, generator=generator)


def validate_on_arrays(site: Site, model: nn.Module, *, n_bootstrap: int) -> dict:
    """The site's test metrics of ``model`` with 95% bootstrap intervals."""
    metrics = site.evaluate(model, "test")
    x, y = site.arrays("test")
    metrics[C.M_INTERVALS] = evaluate_with_intervals(y, predict(model, x), n_bootstrap=n_bootstrap)
    return metrics
