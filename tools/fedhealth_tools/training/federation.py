"""FedAvg / FedProx over heart sites, for benchmarks and tests: the one in-process loop with heart settings.

:func:`run_federation` keeps the heart benchmarks' keywords and runs
:func:`fedhealth_tools.federation.loop.run_loop`: the heart task's own sites, the FLARE executor's
:class:`~fedhealth.client.runner.SiteRunner` with the ``fedprox`` or ``dp_sgd`` plug-in, and a server rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fedhealth import constants as C
from fedhealth.data.features import combine_moments
from fedhealth.privacy.small_cells import DEFAULT_MIN_CELL
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.federation.loop import Channel, LoopResult, run_loop
from fedhealth_tools.federation.rules import Mean, UpdateRule
from fedhealth_tools.federation.sites import heart_task_sites


def federated_scaling(sites: Sequence[HeartSite]) -> dict[str, list[float]]:
    """Combine the sites' feature moments and give every site the global scaling."""
    stats = combine_moments(
        [site.moments(min_cell=DEFAULT_MIN_CELL) for site in sites]
    )  # as sites release them
    for site in sites:
        site.set_scaling(stats)
    return stats


@dataclass
class FederationResult:
    """The final global model and, per round, each site's metrics of the model it received."""

    model: torch.nn.Module
    history: list[dict[str, dict[str, float]]] = field(default_factory=list)
    ledgers: dict[str, dict] = field(default_factory=dict)  # DP-SGD: each site's privacy ledger


def run_federation(
    sites: Sequence[HeartSite],
    model_fn: Callable[[], torch.nn.Module],
    *,
    rounds: int,
    lr: float,
    gamma: float = 1.0,
    seed: int = 0,
    track: bool = False,
    on_round: Callable[[int, torch.nn.Module], None] | None = None,
    rule: str = "mean",
    rule_args: dict | None = None,
    tamper: Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    channel: Channel | None = None,
    dp: dict | None = None,
    **local: object,
) -> FederationResult:
    """FedAvg (``mu=0``) or FedProx (``mu>0``) with sample-count weighting.

    Args:
        sites: the sites (scaled by the loop's federated statistics, as the FLARE job does).
        model_fn: builds the initial global model.
        rounds: number of rounds.
        lr: base learning rate; round ``r`` uses ``lr * gamma ** r``.
        gamma: per-round decay of the learning rate.
        seed: seeds each site's shuffling (site ``i`` uses ``seed * 1000 + i``) and DP noise.
        track: record each site's test metrics of the incoming global model every round.
        on_round: called with ``(round_index, global_model)`` after each aggregation.
        rule: ``"mean"`` (sample-weighted FedAvg) or a rule of
            :func:`fedhealth.training.robust.aggregate_updates`, applied to the sites' updates.
        rule_args: extra arguments of the rule (``trim_fraction``, ``clip_norm``).
        tamper: drills only: ``(site name, weights) -> weights`` applied to what a site sends.
        channel: the way to the server, ``(site name, weights, global weights) -> weights`` the
            server receives (e.g. :class:`fedhealth_tools.compression.channel.CompressedChannel`).
        dp: DP-SGD settings (:class:`fedhealth.privacy.dp_config.DPConfig` fields): the ``dp_sgd``
            plug-in; a site past its budget sends nothing, as in the FLARE job.
        **local: further local-training settings (batch_size, local_steps, mu, ...).
    """
    task, task_sites = heart_task_sites(sites)
    mu = float(local.pop("mu", 0.0) or 0.0)  # type: ignore[arg-type]
    algorithms: list[dict] = [{"name": "fedprox", "args": {"mu": mu}}] if mu != 0.0 else []
    if dp:
        algorithms.append({"name": "dp_sgd", "args": dict(dp)})
    seeds = [seed * 1000 + i for i in range(len(sites))]
    result = run_loop(
        task,
        task_sites,
        model_fn(),
        rounds=rounds,
        lr=lr,
        gamma=gamma,
        algorithms=algorithms,
        local=local,
        rule=Mean() if rule == "mean" else UpdateRule(rule, dict(rule_args or {})),
        seeds=seeds,
        on_round=(lambda r, res: on_round(r, res.model)) if on_round else None,
        channel=channel,
        tamper=tamper,
    )
    out = FederationResult(model=result.model, ledgers=_ledgers(result))
    if track:
        out.history = [{name: _received(m) for name, m in metrics.items()} for metrics in result.rounds]
    return out


def _received(metrics: dict) -> dict[str, float]:
    """A site's metrics of the global model it received (the round's ``global_*`` numbers)."""
    got = {k: metrics[f"global_{k}"] for k in (C.M_ACCURACY, C.M_AUC, C.M_LOSS)}
    return {**got, C.M_N_TRAIN: float(metrics[C.M_N_TRAIN]), C.M_N_TEST: float(metrics[C.M_N_TEST])}


def _ledgers(result: LoopResult) -> dict[str, dict]:
    """Each DP-SGD site's privacy ledger."""
    out = {}
    for name, runner in result.runners.items():
        trainer = getattr(runner.algorithm("dp_sgd"), "trainer", None)
        if trainer is not None:
            out[name] = trainer.ledger.to_dict()
    return out
