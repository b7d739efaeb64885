"""The in-process twin for non-IID remedies: SCAFFOLD, FedOpt, Ditto and clustered FL.

Sibling of :func:`fedhealth_tools.training.federation.run_federation` (FedAvg / FedProx): the same site
code (:meth:`HeartSite.train_round`), the same sample-weighted averaging and ``lr * gamma ** r``
schedule, with each algorithm's FLARE-free core from :mod:`fedhealth.algorithms` on top. A run
reports, after every round, the model each site would use: the global model (SCAFFOLD, FedOpt),
each site's personal model (Ditto) or its cluster's model (clustered FL).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fedhealth.algorithms import scaffold
from fedhealth.algorithms.clustering import split_if_apart
from fedhealth.algorithms.ditto import train_personal
from fedhealth.algorithms.fedopt import ServerOptimizer, averaged_delta
from fedhealth.models.state import to_numpy
from fedhealth.training.aggregation import weighted_average
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import LocalTrainConfig
from fedhealth.training.schedule import lr_for_round

if TYPE_CHECKING:  # image sites import MONAI; the heart twin does not need it
    from fedhealth_tools.imaging.noniid_site import ImageTrainSite

ALGORITHMS = ("scaffold", "fedopt", "ditto", "clustered")
SiteModels = dict[str, nn.Module]


@dataclass
class NonIIDResult:
    """The final global model(s), the model each site uses, and the clusters of every round."""

    model: nn.Module
    site_models: SiteModels
    clusters: list[list[list[str]]] = field(default_factory=list)


def _load(model: nn.Module, weights: Mapping[str, np.ndarray]) -> None:
    model.load_state_dict({k: torch.as_tensor(np.asarray(v, dtype="float32")) for k, v in weights.items()})


def _params(model: nn.Module) -> dict[str, np.ndarray]:
    return {n: p.detach().numpy().astype("float64") for n, p in model.named_parameters()}


def _train(
    site: HeartSite,
    start: nn.Module,
    config: LocalTrainConfig,
    gen: torch.Generator,
    corr: Mapping[str, np.ndarray] | None = None,
) -> tuple[nn.Module, int]:
    """One site's local round from ``start``; returns the trained copy and its optimizer steps."""
    local = copy.deepcopy(start)
    if corr is None:
        stats = site.train_round(local, config, generator=gen)
    else:
        with scaffold.corrected_gradients(local, corr):
            stats = site.train_round(local, config, generator=gen)
    return local, int(stats["steps"])


def run_noniid(
    sites: Sequence[HeartSite | ImageTrainSite],
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
        sites: the sites, already scaled: heart sites or image sites (anything with ``name``,
            ``n_train``, ``train_round`` and ``arrays``, e.g. :class:`ImageTrainSite`).
        model_fn: builds the initial global model.
        algorithm: ``"scaffold"``, ``"fedopt"``, ``"ditto"`` or ``"clustered"``.
        rounds, lr, gamma, seed: as in :func:`~fedhealth_tools.training.federation.run_federation`.
        options: the algorithm's settings. scaffold: ``global_lr`` (1.0), ``lr_scale`` (1.0; the
            local step size is ``lr * lr_scale``, e.g. ``1 / (1 - beta)`` for heavy-ball momentum
            ``beta``, as the image sites' SGD uses). fedopt: ``server_opt``
            (``"yogi"``), ``server_lr``, ``beta1``, ``beta2``, ``tau``. ditto: ``lam``, ``ditto_lr``
            (``lr``), ``ditto_epochs`` (1). clustered: ``split_round`` (first round that may split,
            5), ``split_threshold`` (split when the groups' largest cross similarity is below it,
            0.0), ``max_clusters`` (2), or ``fixed_clusters`` (lists of site names, e.g. from
            :func:`fedhealth.algorithms.clustering.metadata_clusters`, used from ``split_round``).
        on_round: called with ``(round_index, {site: model it uses})`` after each round.
        **local: further :class:`LocalTrainConfig` fields.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, not {algorithm!r}.")
    opts = dict(options or {})
    names = [s.name for s in sites]
    weights = [float(s.n_train) for s in sites]
    gens = [torch.Generator().manual_seed(seed * 1000 + i) for i in range(len(sites))]
    global_model = model_fn()
    result = NonIIDResult(model=global_model, site_models={n: global_model for n in names})
    c_global = scaffold.zeros_like(_params(global_model))
    c_local = [scaffold.zeros_like(c_global) for _ in sites]
    server = (
        ServerOptimizer(
            kind=str(opts.get("server_opt", "yogi")),
            lr=float(opts.get("server_lr", 0.01)),
            beta1=float(opts.get("beta1", 0.9)),
            beta2=float(opts.get("beta2", 0.99)),
            tau=float(opts.get("tau", 1e-3)),
        )
        if algorithm == "fedopt"
        else None
    )
    personal = {n: copy.deepcopy(global_model) for n in names} if algorithm == "ditto" else {}
    groups: list[list[int]] = [list(range(len(sites)))]
    models = [global_model]
    for r in range(rounds):
        config = LocalTrainConfig(lr=lr_for_round(lr, gamma, r), **local)  # type: ignore[arg-type]
        if algorithm == "scaffold":
            start = _params(global_model)
            dys, dcs = [], []
            for i, (site, gen) in enumerate(zip(sites, gens, strict=True)):
                corr = scaffold.correction(c_global, c_local[i])
                trained, steps = _train(site, global_model, config, gen, corr)
                end = _params(trained)
                c_local[i], dc = scaffold.update_local_control(
                    c_local[i],
                    c_global,
                    start,
                    end,
                    steps=steps,
                    lr=config.lr * float(opts.get("lr_scale", 1.0)),
                )
                dys.append({k: end[k] - start[k] for k in start})
                dcs.append(dc)
            new_x, c_global = scaffold.server_update(
                start,
                c_global,
                dys,
                dcs,
                n_sites=len(sites),
                global_lr=float(opts.get("global_lr", 1.0)),
                site_weights=weights,
            )
            _load(global_model, new_x)
        elif algorithm == "fedopt":
            states = [
                to_numpy(_train(s, global_model, config, g)[0]) for s, g in zip(sites, gens, strict=True)
            ]
            current = {k: v.astype("float64") for k, v in to_numpy(global_model).items()}
            _load(
                global_model, server.step(current, averaged_delta(current, weighted_average(states, weights)))
            )
        elif algorithm == "ditto":
            incoming = copy.deepcopy(global_model)
            states = []
            for site, gen in zip(sites, gens, strict=True):
                states.append(to_numpy(_train(site, incoming, config, gen)[0]))
                x, y = site.arrays("train")
                train_personal(
                    personal[site.name],
                    incoming,
                    x,
                    y,
                    lam=float(opts["lam"]),
                    lr=float(opts.get("ditto_lr", config.lr)),
                    epochs=int(opts.get("ditto_epochs", 1)),
                    batch_size=config.batch_size,
                    generator=gen,
                )
            _load(global_model, weighted_average(states, weights))
            result.site_models = dict(personal)
        else:
            groups, models = _clustered_round(sites, groups, models, config, gens, weights, r, opts)
            result.site_models = {names[i]: models[k] for k, g in enumerate(groups) for i in g}
            result.clusters.append([[names[i] for i in g] for g in groups])
        if on_round is not None:
            on_round(r, result.site_models)
    return result


def _clustered_round(
    sites: Sequence[HeartSite],
    groups: list[list[int]],
    models: list[nn.Module],
    config: LocalTrainConfig,
    gens: list[torch.Generator],
    weights: list[float],
    r: int,
    opts: Mapping[str, object],
) -> tuple[list[list[int]], list[nn.Module]]:
    """One round of clustered FL: FedAvg inside each cluster, then maybe split a cluster in two."""
    names = [s.name for s in sites]
    fixed = opts.get("fixed_clusters")
    if fixed is not None and r == int(opts.get("split_round", 0)):
        index = {n: i for i, n in enumerate(names)}
        groups = [[index[n] for n in g] for g in fixed]
        models = [copy.deepcopy(models[0]) for _ in groups]
    new_groups, new_models = [], []
    for group, model in zip(groups, models, strict=True):
        start = to_numpy(model)
        states = [to_numpy(_train(sites[i], model, config, gens[i])[0]) for i in group]
        _load(model, weighted_average(states, [weights[i] for i in group]))
        can_split = fixed is None and len(group) >= 2 and len(groups) < int(opts.get("max_clusters", 2))
        if can_split and r >= int(opts.get("split_round", 5)):
            updates = [{k: s[k] - start[k] for k in start} for s in states]
            parts = split_if_apart(updates, threshold=float(opts.get("split_threshold", 0.0)))
            if parts is not None:
                for part in parts:
                    sub = copy.deepcopy(model)
                    _load(sub, weighted_average([states[j] for j in part], [weights[group[j]] for j in part]))
                    new_groups.append([group[j] for j in part])
                    new_models.append(sub)
                continue
        new_groups.append(group)
        new_models.append(model)
    return new_groups, new_models
