"""One in-process federation loop over the FLARE executor's own sites and client algorithms.

Every round the server side (a :class:`~fedhealth_tools.federation.rules.Rule`) sends each site its
weights, each site runs :class:`fedhealth.client.runner.SiteRunner` (the very object the FLARE
``SiteExecutor`` calls) with the job's client algorithms, and the rule aggregates the replies. The task's
own server steps run first (heart: ``fed_stats`` then ``set_scaling``, as
:class:`~fedhealth.workflows.fed_stats_controller.FedStatsController` does), and the learning rate of
round ``r`` is :func:`fedhealth.training.schedule.lr_for_round`, as the FLARE server's scheduled
shareable generator sends it. No FLARE, no processes: many seeds and settings fit in a benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from fedhealth import constants as C
from fedhealth.client.base import RoundInput
from fedhealth.client.runner import SiteRunner
from fedhealth.data.features import combine_moments
from fedhealth.models.state import to_numpy, to_tensors
from fedhealth.privacy.budget import PrivacyBudgetExhaustedError
from fedhealth.tasks.base import Site, Task
from fedhealth.training.schedule import lr_for_round
from fedhealth_tools.federation.rules import Mean, Reply, Rule, Weights

# (site name, weights sent, global weights) -> weights the server receives (benchmarks and drills only).
Channel = Callable[[str, Weights, Weights], Weights]


@dataclass
class LoopResult:
    """The final global model, the model each site uses, each round's site metrics, and the runners.

    Attributes:
        model: the final global model.
        site_models: the model each site uses: the global model, its cluster's, or its personal one
            (Ditto keeps it at the site: :attr:`runners` hold it).
        rounds: per round, each answering site's round metrics (``global_auc`` is the model it received).
        runners: each site's :class:`SiteRunner` (its algorithms keep their state: ledgers, personal models).
        rule: the server rule, with its state (clusters, control variate).
    """

    model: nn.Module
    site_models: dict[str, nn.Module]
    rounds: list[dict[str, dict]] = field(default_factory=list)
    runners: dict[str, SiteRunner] = field(default_factory=dict)
    rule: Rule | None = None


def server_steps(task: Task, sites: Sequence[Site]) -> None:
    """The task's server-side steps before training (heart: federated statistics, then the scaling)."""
    steps = tuple(task.steps)
    if not steps:
        return
    if steps != (C.TASK_FED_STATS, C.TASK_SET_SCALING):
        raise ValueError(f"the in-process loop knows the steps (fed_stats, set_scaling), not {steps}.")
    answers = [site.extra_tasks()[C.TASK_FED_STATS]({}) for site in sites]
    names = [list(a[C.S_FEATURES]) for a in answers]
    if any(n != names[0] for n in names):
        raise ValueError("the sites encode different features; federated statistics need the same ones.")
    moments = [{k: a[k] for k in (C.S_COUNT, C.S_SUM, C.S_SUMSQ)} for a in answers]
    stats = {**combine_moments(moments), C.S_FEATURES: names[0]}
    for site in sites:
        site.extra_tasks()[C.TASK_SET_SCALING](stats)


def run_loop(
    task: Task,
    sites: Sequence[Site],
    model: nn.Module,
    *,
    rounds: int,
    lr: float,
    gamma: float = 1.0,
    algorithms: Sequence[str | Mapping[str, object]] = (),
    local: Mapping[str, object],
    rule: Rule | None = None,
    seeds: Sequence[int] | None = None,
    shuffle_seeds: Sequence[int] | None = None,
    dp_seeds: Sequence[int] | None = None,
    on_round: Callable[[int, LoopResult], None] | None = None,
    channel: Channel | None = None,
    tamper: Callable[[str, Weights], Weights] | None = None,
) -> LoopResult:
    """Run ``rounds`` rounds of ``task`` over ``sites`` from ``model``.

    Args:
        task: the task that built the sites (it rebuilds each received model and names the server steps).
        sites: the sites (the task's own :class:`~fedhealth.tasks.base.Site` objects).
        model: the initial global model.
        rounds: number of rounds.
        lr: learning rate of round 0; round ``r`` sends ``lr * gamma ** r``.
        gamma: per-round decay.
        algorithms: the job's client algorithms, names or ``{"name", "args"}`` as in a job; each site
            builds its own plug-ins from them (they keep per-site state: control variates, ledgers).
        local: local-training settings (``batch_size``, ``local_steps``, ``local_epochs``, ``optimizer``,
            ``weight_decay``).
        rule: the server rule (default :class:`~fedhealth_tools.federation.rules.Mean`, FedAvg).
        seeds: each site's runner seed (augmentation of round ``r`` uses ``seed + r``); default ``0``s.
        shuffle_seeds: each site's shuffling seed (default: its seed).
        dp_seeds: each site's DP-SGD sampling and noise seed (default: its shuffling seed).
        on_round: called with ``(round_index, result so far)`` after each aggregation.
        channel: the way to the server (e.g. compression); sees each site's weights and the global ones.
        tamper: drills only: ``(site name, weights) -> weights`` applied to what a site sends.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}.")
    n = len(sites)
    seeds = list(seeds) if seeds is not None else [0] * n
    shuffle_seeds = list(shuffle_seeds) if shuffle_seeds is not None else seeds
    dp_seeds = list(dp_seeds) if dp_seeds is not None else shuffle_seeds
    if not len(seeds) == len(shuffle_seeds) == len(dp_seeds) == n:
        raise ValueError(f"give one seed per site: {n} sites, {len(seeds)} seeds.")
    if any(not isinstance(a, str | Mapping) for a in algorithms):
        raise ValueError("give the client algorithms as names or {'name', 'args'}: each site builds its own.")
    server_steps(task, sites)
    runners = {
        site.name: SiteRunner(
            task,
            site,
            algorithms=list(algorithms),
            local=local,
            seed=seeds[i],
            shuffle_seed=shuffle_seeds[i],
            dp_seed=dp_seeds[i],
        )
        for i, site in enumerate(sites)
    }
    rule = rule if rule is not None else Mean()
    rule.start(to_numpy(model), [s.name for s in sites])
    result = LoopResult(model=model, site_models={s.name: model for s in sites}, runners=runners, rule=rule)
    for r in range(rounds):
        rule.before_round(r)
        replies, metrics = [], {}
        for site in sites:
            weights, extras = rule.send(site.name)
            rnd = RoundInput(dict(weights), lr_for_round(lr, gamma, r), r, rounds, dict(extras))
            try:
                state = runners[site.name].run_round(rnd)
            except PrivacyBudgetExhaustedError:
                continue  # a site past its privacy budget sends nothing, as in the FLARE job
            sent = channel(site.name, state.update, dict(weights)) if channel else state.update
            sent = tamper(site.name, sent) if tamper else sent
            extras = {k: dict(v) for k, v in state.extras.items()}
            reply = Reply(site.name, sent, float(site.n_train), int(state.stats[C.M_STEPS]), extras)
            rule.check(reply)
            replies.append(reply)
            metrics[site.name] = state.metrics
        if not replies:
            break  # every site is past its privacy budget
        rule.aggregate(r, replies)
        result.rounds.append(metrics)
        _load(model, rule.global_weights)
        result.site_models = _site_models(rule, runners, sites, model)
        if on_round is not None:
            on_round(r, result)
    return result


def _load(model: nn.Module, weights: Mapping[str, np.ndarray]) -> None:
    model.load_state_dict(to_tensors(weights))


def _site_models(
    rule: Rule, runners: Mapping[str, SiteRunner], sites: Sequence[Site], model: nn.Module
) -> dict[str, nn.Module]:
    """Each site's model: its personal one (Ditto), its cluster's, else the global model."""
    out: dict[str, nn.Module] = {}
    shared: dict[int, nn.Module] = {}
    for site in sites:
        ditto = runners[site.name].algorithm("ditto")
        personal = getattr(ditto, "personal", None)
        if personal is not None:
            out[site.name] = personal
            continue
        weights = rule.site_weights(site.name)
        if weights is rule.global_weights:
            out[site.name] = model
        else:
            if id(weights) not in shared:
                shared[id(weights)] = runners[site.name].model(weights)
            out[site.name] = shared[id(weights)]
    return out
