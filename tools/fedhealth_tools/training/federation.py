"""An in-process federation over :class:`HeartSite` objects, for benchmarks and tests.

It runs the same site code (:meth:`HeartSite.train_round`) and the same weighted averaging as the
FLARE job, without processes or networking, so many seeds and settings fit in a benchmark. The
real federation is the FLARE job under ``jobs/``; this is its twin for measurement.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from fedhealth.data.features import combine_moments
from fedhealth.training.aggregation import weighted_average
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import LocalTrainConfig
from fedhealth.training.schedule import lr_for_round


def federated_scaling(sites: Sequence[HeartSite]) -> dict[str, list[float]]:
    """Combine the sites' feature moments and give every site the global scaling."""
    stats = combine_moments([site.moments() for site in sites])
    for site in sites:
        site.set_scaling(stats)
    return stats


def _aggregate(
    global_model: torch.nn.Module, states: list[dict], weights: list[float], rule: str, rule_args: dict
) -> dict[str, np.ndarray]:
    if rule == "mean":
        return weighted_average(states, weights)
    from fedhealth.training.robust import aggregate_updates

    start = {k: v.detach().numpy().astype("float64") for k, v in global_model.state_dict().items()}
    updates = [{k: s[k].astype("float64") - start[k] for k in start} for s in states]
    update = aggregate_updates(updates, weights, rule=rule, **rule_args)
    return {k: start[k] + update[k] for k in start}


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
    channel: Callable[[str, dict[str, np.ndarray], dict[str, np.ndarray]], dict[str, np.ndarray]]
    | None = None,
    dp: dict | None = None,
    **local: object,
) -> FederationResult:
    """FedAvg (``mu=0``) or FedProx (``mu>0``) with sample-count weighting.

    Args:
        sites: the sites, already scaled (see :func:`federated_scaling`).
        model_fn: builds the initial global model.
        rounds: number of rounds.
        lr: base learning rate; round ``r`` uses ``lr * gamma ** r``.
        gamma: per-round decay of the learning rate.
        seed: seeds each site's shuffling (site ``i`` uses ``seed * 1000 + i``).
        track: record each site's test metrics of the incoming global model every round.
        on_round: called with ``(round_index, global_model)`` after each aggregation.
        rule: ``"mean"`` (sample-weighted FedAvg) or a robust rule of
            :func:`fedhealth.training.robust.aggregate_updates`, applied to the sites' updates.
        rule_args: extra arguments of the rule (``trim_fraction``, ``clip_norm``).
        tamper: drills only: ``(site name, weights) -> weights`` applied to what a site sends.
        channel: the way to the server, ``(site name, weights, global weights) -> weights`` the
            server receives (e.g. :class:`fedhealth_tools.compression.channel.CompressedChannel`).
        dp: DP-SGD settings (:class:`fedhealth.privacy.dp_config.DPConfig` fields), trained through the
            executor's own :func:`fedhealth.privacy.site_dp.site_trainer`; a site past its budget sends
            nothing, as in the FLARE job.
        **local: further :class:`LocalTrainConfig` fields (batch_size, local_steps, mu, ...).
    """
    global_model = model_fn()
    generators = [torch.Generator().manual_seed(seed * 1000 + i) for i in range(len(sites))]
    result = FederationResult(model=global_model)
    private = _private_trainers(sites, global_model, dp, rounds, seed, local) if dp else None
    for r in range(rounds):
        config = LocalTrainConfig(lr=lr_for_round(lr, gamma, r), **local)  # type: ignore[arg-type]
        if track:
            result.history.append({s.name: s.evaluate(global_model) for s in sites})
        states, weights = [], []
        start = {k: v.detach().numpy().copy() for k, v in global_model.state_dict().items()}
        for site, gen in zip(sites, generators, strict=True):
            local_model = copy.deepcopy(global_model)
            if private is not None:
                if not _private_round(private[site.name], local_model, config.lr, r):
                    continue
            else:
                site.train_round(local_model, config, generator=gen)
            state = {k: v.detach().numpy() for k, v in local_model.state_dict().items()}
            if channel is not None:
                state = channel(site.name, state, start)
            states.append(tamper(site.name, state) if tamper else state)
            weights.append(site.n_train)
        if not states:
            break  # every site is past its privacy budget
        averaged = _aggregate(global_model, states, weights, rule, rule_args or {})
        global_model.load_state_dict(
            {k: torch.as_tensor(np.asarray(v, dtype="float32")) for k, v in averaged.items()}
        )
        if on_round is not None:
            on_round(r, global_model)
    if private is not None:
        result.ledgers = {name: trainer.ledger.to_dict() for name, trainer in private.items()}
    return result


def _private_trainers(sites, model, dp: dict, rounds: int, seed: int, local: dict) -> dict:
    from fedhealth.privacy.dp_config import DPConfig
    from fedhealth.privacy.site_dp import site_trainer

    config = DPConfig.from_dict(dp)
    return {
        s.name: site_trainer(model, s, config, local=local, rounds=rounds, seed=seed * 1000 + i)
        for i, s in enumerate(sites)
    }


def _private_round(trainer, model: torch.nn.Module, lr: float, round_index: int) -> bool:
    """One DP-SGD round at a site; False when the site declines (its budget is spent)."""
    from fedhealth.privacy.budget import PrivacyBudgetExhaustedError

    try:
        trainer.train_round(model, lr=lr, round_index=round_index)
    except PrivacyBudgetExhaustedError:
        return False
    return True
