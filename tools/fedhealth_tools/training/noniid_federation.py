"""The non-IID remedies in process: SCAFFOLD, FedOpt, Ditto and clustered FL through the one loop.

Each algorithm is a pair, as in its FLARE job: the client plug-ins the site runs
(:mod:`fedhealth.client`: ``scaffold``, ``ditto``) and the server rule
(:mod:`fedhealth_tools.federation.rules`: SCAFFOLD's server update, a FedOpt server optimizer, clustered
FedAvg), run by :func:`fedhealth_tools.federation.loop.run_loop` over heart or image sites. A run
reports, after every round, the model each site would use: the global model (SCAFFOLD, FedOpt), each
site's personal model (Ditto) or its cluster's model (clustered FL).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

from fedhealth.algorithms.fedopt import ServerOptimizer
from fedhealth_tools.federation.loop import run_loop
from fedhealth_tools.federation.rules import Clustered, FedOptServer, Mean, Rule, ScaffoldServer
from fedhealth_tools.federation.sites import task_for

ALGORITHMS = ("scaffold", "fedopt", "ditto", "clustered")
SiteModels = dict[str, nn.Module]


@dataclass
class NonIIDResult:
    """The final global model(s), the model each site uses, the clusters and site metrics of every round."""

    model: nn.Module
    site_models: SiteModels
    clusters: list[list[list[str]]] = field(default_factory=list)
    rounds: list[dict[str, dict]] = field(default_factory=list)


def plan(
    algorithm: str, options: Mapping[str, object], *, lr: float, gamma: float
) -> tuple[list[dict], Rule]:
    """The client plug-ins and the server rule of ``algorithm`` with its ``options``.

    Raises:
        ValueError: an unknown algorithm.
    """
    o = dict(options)
    if algorithm == "scaffold":
        args = {"lr": lr, "gamma": gamma, "lr_scale": float(o.get("lr_scale", 1.0))}
        return [{"name": "scaffold", "args": args}], ScaffoldServer(global_lr=float(o.get("global_lr", 1.0)))
    if algorithm == "fedopt":
        optimizer = ServerOptimizer(
            kind=str(o.get("server_opt", "yogi")),
            lr=float(o.get("server_lr", 0.01)),
            beta1=float(o.get("beta1", 0.9)),
            beta2=float(o.get("beta2", 0.99)),
            tau=float(o.get("tau", 1e-3)),
        )
        return [], FedOptServer(optimizer)
    if algorithm == "ditto":
        args = {"lam": float(o["lam"]), "lr": o.get("ditto_lr"), "epochs": int(o.get("ditto_epochs", 1))}
        return [{"name": "ditto", "args": args}], Mean()
    if algorithm == "clustered":
        fixed = o.get("fixed_clusters")
        return [], Clustered(
            split_round=int(o.get("split_round", 0 if fixed is not None else 5)),
            split_threshold=float(o.get("split_threshold", 0.0)),
            max_clusters=int(o.get("max_clusters", 2)),
            fixed_clusters=fixed,  # type: ignore[arg-type]
        )
    raise ValueError(f"algorithm must be one of {ALGORITHMS}, not {algorithm!r}.")


def run_noniid(
    sites: Sequence,
    model_fn: Callable[[], nn.Module],
    *,
    algorithm: str,
    rounds: int,
    lr: float,
    gamma: float = 1.0,
    seed: int = 0,
    options: Mapping[str, object] | None = None,
    on_round: Callable[[int, SiteModels], None] | None = None,
    **local: object,
) -> NonIIDResult:
    """Run one non-IID algorithm for ``rounds`` rounds.

    Args:
        sites: heart sites (``HeartSite`` or the heart task's) or imaging ``ImageSite`` s.
        model_fn: builds the initial global model.
        algorithm: ``"scaffold"``, ``"fedopt"``, ``"ditto"`` or ``"clustered"``.
        rounds, lr, gamma, seed: as in :func:`~fedhealth_tools.training.federation.run_federation`.
        options: the algorithm's settings. scaffold: ``global_lr`` (1.0), ``lr_scale`` (1.0; the
            control variates' step is ``lr * lr_scale``, e.g. ``1 / (1 - beta)`` for heavy-ball momentum
            ``beta``, as the image sites' SGD uses). fedopt: ``server_opt``
            (``"yogi"``), ``server_lr``, ``beta1``, ``beta2``, ``tau``. ditto: ``lam``, ``ditto_lr``
            (``lr``), ``ditto_epochs`` (1). clustered: ``split_round`` (first round that may split,
            5), ``split_threshold`` (split when the groups' largest cross similarity is below it,
            0.0), ``max_clusters`` (2), or ``fixed_clusters`` (lists of site names, e.g. from
            :func:`fedhealth.algorithms.clustering.metadata_clusters`, used from ``split_round``).
        on_round: called with ``(round_index, {site: model it uses})`` after each round.
        **local: further local-training settings.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, not {algorithm!r}.")
    model = model_fn()
    task, task_sites = task_for(sites, model)
    algorithms, rule = plan(algorithm, options or {}, lr=lr, gamma=gamma)
    result = run_loop(
        task,
        task_sites,
        model,
        rounds=rounds,
        lr=lr,
        gamma=gamma,
        algorithms=algorithms,
        local=local,
        rule=rule,
        seeds=[seed * 1000 + i for i in range(len(sites))],
        on_round=(lambda r, res: on_round(r, res.site_models)) if on_round else None,
    )
    clusters = list(getattr(rule, "history", []))
    return NonIIDResult(
        model=result.model, site_models=dict(result.site_models), clusters=clusters, rounds=result.rounds
    )
