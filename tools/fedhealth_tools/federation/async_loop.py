"""FedBuff in-process, on a simulated clock: what the FLARE ``FedBuffController`` does, without FLARE.

Each site takes ``durations[site]`` simulated seconds per task. A site is sent the current global
version, trains at once (the :class:`~fedhealth.client.runner.SiteRunner` of the FLARE executor), and
its result *arrives* ``durations[site]`` later; results are taken in arrival order into the
:class:`~fedhealth.algorithms.fedbuff.FedBuff` buffer, and the site is sent the latest version. The
clock, not the machine, decides who is stale, so a benchmark of a slow hospital is exact and fast.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from fedhealth.algorithms.fedbuff import FedBuff, FedBuffConfig
from fedhealth.client.base import RoundInput
from fedhealth.client.runner import SiteRunner
from fedhealth.models.state import to_numpy, to_tensors
from fedhealth.tasks.base import Site, Task
from fedhealth.training.schedule import lr_for_round
from fedhealth_tools.federation.loop import server_steps


@dataclass
class AsyncResult:
    """The final model, the simulated time of each version, and the core (its ``history``)."""

    model: nn.Module
    times: list[float] = field(default_factory=list)
    core: FedBuff | None = None


def run_fedbuff_loop(
    task: Task,
    sites: Sequence[Site],
    model: nn.Module,
    *,
    durations: Mapping[str, float],
    num_versions: int,
    config: FedBuffConfig,
    lr: float,
    gamma: float = 1.0,
    local: Mapping[str, object],
    seeds: Sequence[int] | None = None,
) -> AsyncResult:
    """Run FedBuff until ``num_versions`` versions; each site's task takes ``durations[site]``.

    Args:
        task: the task that built the sites.
        sites: the task's sites.
        model: the initial global model (version 0).
        durations: simulated seconds per task, by site name.
        num_versions: versions to make.
        config: the FedBuff settings.
        lr: learning rate of version 0; a task from version ``v`` trains at ``lr * gamma ** v``.
        gamma: decay per version.
        local: local-training settings (``batch_size``, ``local_epochs``, ...).
        seeds: each site's runner seed (default 0s).
    """
    missing = sorted({s.name for s in sites} - set(durations))
    if missing or any(not d > 0 for d in durations.values()):
        raise ValueError(f"give every site a positive duration; missing {missing}.")
    seeds = list(seeds) if seeds is not None else [0] * len(sites)
    server_steps(task, sites)
    runners = {s.name: SiteRunner(task, s, local=local, seed=seeds[i]) for i, s in enumerate(sites)}
    core = FedBuff(to_numpy(model), config)
    arrivals: list[tuple[float, int, str, object]] = []
    order = 0

    def send(name: str, now: float) -> None:
        nonlocal order
        version = core.checkout(name)
        weights = {k: v.astype(np.float32) for k, v in core.model.items()}
        rnd = RoundInput(weights, lr_for_round(lr, gamma, version), version, num_versions)
        state = runners[name].run_round(rnd)
        order += 1
        heapq.heappush(arrivals, (now + durations[name], order, name, state))

    for site in sites:
        send(site.name, 0.0)
    result = AsyncResult(model=model, core=core)
    n_train = {s.name: float(s.n_train) for s in sites}
    while core.version < num_versions:
        now, _, name, state = heapq.heappop(arrivals)
        part = "delta" if state.kind == "WEIGHT_DIFF" else "weights"
        done = core.submit(name, sample_weight=n_train[name], **{part: state.update})
        if done.applied is not None:
            result.times.append(now)
        if core.version < num_versions:
            send(name, now)
    model.load_state_dict(to_tensors({k: v.astype(np.float32) for k, v in core.model.items()}))
    return result
