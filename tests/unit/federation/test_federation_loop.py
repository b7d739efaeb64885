"""The one in-process loop on the four heart hospitals: it reproduces the FedAvg twin and SCAFFOLD it
replaced to 1e-6, passes FedNova its sites' steps, trains DP-SGD reproducibly, and runs the task's
server steps."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from fedhealth import constants as C
from fedhealth.algorithms import scaffold
from fedhealth.client.fedprox import FedProx
from fedhealth.data.features import combine_moments
from fedhealth.models.state import to_numpy
from fedhealth.models.tabular import TabularNet
from fedhealth.privacy.small_cells import DEFAULT_MIN_CELL
from fedhealth.tasks.heart import HeartTask
from fedhealth.training.aggregation import weighted_average
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import LocalTrainConfig
from fedhealth.training.robust import aggregate_updates
from fedhealth.training.schedule import lr_for_round
from fedhealth_tools.federation.loop import run_loop, server_steps
from fedhealth_tools.federation.rules import Clustered, Mean, ScaffoldServer, UpdateRule

ROUNDS, LR, GAMMA, SEED, BATCH = 3, 0.05, 0.9, 1, 8
LOCAL = {"batch_size": BATCH, "local_epochs": 1}
SEEDS = [SEED * 1000 + i for i in range(4)]
DP = {"target_epsilon": 5.0, "max_grad_norm": 1.0}


def _heart_sites(heart_tables: dict) -> list[HeartSite]:
    sites = [HeartSite(n, tr, te) for n, (tr, te) in heart_tables.items()]
    stats = combine_moments([s.moments(min_cell=DEFAULT_MIN_CELL) for s in sites])
    for site in sites:
        site.set_scaling(stats)
    return sites


def _task_sites(heart_tables: dict) -> tuple[HeartTask, list]:
    task = HeartTask()
    return task, [task.site_from_tables(n, tr, te) for n, (tr, te) in heart_tables.items()]


def _model() -> TabularNet:
    return TabularNet(in_features=14, seed=0)


def _loop(heart_tables: dict, **kwargs) -> dict[str, np.ndarray]:
    task, sites = _task_sites(heart_tables)
    kwargs = {"rounds": ROUNDS, "lr": LR, "gamma": GAMMA, "local": LOCAL, "seeds": SEEDS, **kwargs}
    return to_numpy(run_loop(task, sites, _model(), **kwargs).model)


def _old_fedavg(heart_tables: dict, mu: float = 0.0) -> dict[str, np.ndarray]:
    """The FedAvg twin this loop replaced: HeartSite.train_round, a generator per site, weighted mean."""
    sites, model = _heart_sites(heart_tables), _model()
    gens = [torch.Generator().manual_seed(s) for s in SEEDS]
    for r in range(ROUNDS):
        config = LocalTrainConfig(lr=lr_for_round(LR, GAMMA, r), mu=mu, **LOCAL)
        states = []
        for site, gen in zip(sites, gens, strict=True):
            local = copy.deepcopy(model)
            site.train_round(local, config, generator=gen)
            states.append(to_numpy(local))
        averaged = weighted_average(states, [s.n_train for s in sites])
        model.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in averaged.items()})
    return to_numpy(model)


def _old_scaffold(heart_tables: dict, lr_scale: float = 1.0) -> dict[str, np.ndarray]:
    """The non-IID twin's SCAFFOLD branch this loop replaced (control variates over the parameters)."""
    sites, model = _heart_sites(heart_tables), _model()
    gens = [torch.Generator().manual_seed(s) for s in SEEDS]
    params = lambda m: {n: p.detach().numpy().astype("float64") for n, p in m.named_parameters()}  # noqa: E731
    c_global = scaffold.zeros_like(params(model))
    c_local = [scaffold.zeros_like(c_global) for _ in sites]
    for r in range(ROUNDS):
        config = LocalTrainConfig(lr=lr_for_round(LR, GAMMA, r), **LOCAL)
        start, dys, dcs = params(model), [], []
        for i, (site, gen) in enumerate(zip(sites, gens, strict=True)):
            local = copy.deepcopy(model)
            with scaffold.corrected_gradients(local, scaffold.correction(c_global, c_local[i])):
                steps = site.train_round(local, config, generator=gen)["steps"]
            end = params(local)
            c_local[i], dc = scaffold.update_local_control(
                c_local[i], c_global, start, end, steps=int(steps), lr=config.lr * lr_scale
            )
            dys.append({k: end[k] - start[k] for k in start})
            dcs.append(dc)
        new_x, c_global = scaffold.server_update(
            start, c_global, dys, dcs, n_sites=4, site_weights=[s.n_train for s in sites]
        )
        model.load_state_dict({k: torch.as_tensor(v, dtype=torch.float32) for k, v in new_x.items()})
    return to_numpy(model)


# (case, the loop's arguments, the reference the loop must equal to 1e-6)
EQUAL_CASES = [
    ("fedavg", {}, _old_fedavg),
    ("fedavg_mean_rule", {"rule": Mean()}, _old_fedavg),
    ("fedprox", {"algorithms": [{"name": "fedprox", "args": {"mu": 0.5}}]}, lambda t: _old_fedavg(t, 0.5)),
    ("update_mean", {"rule": UpdateRule("mean")}, _old_fedavg),
    (
        "scaffold",
        {
            "algorithms": [{"name": "scaffold", "args": {"lr": LR, "gamma": GAMMA}}],
            "rule": ScaffoldServer(),
        },
        _old_scaffold,
    ),
    (
        "scaffold_lr_scale",
        {
            "algorithms": [{"name": "scaffold", "args": {"lr": LR, "gamma": GAMMA, "lr_scale": 2.0}}],
            "rule": ScaffoldServer(),
        },
        lambda t: _old_scaffold(t, 2.0),
    ),
]


@pytest.mark.parametrize(("case", "kwargs", "reference"), EQUAL_CASES, ids=[c[0] for c in EQUAL_CASES])
def test_loop_equals_the_twin_it_replaced(heart_tables: dict, case: str, kwargs: dict, reference) -> None:
    got, want = _loop(heart_tables, **kwargs), reference(heart_tables)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-6, rtol=0)


def test_scaffold_moves_away_from_fedavg(heart_tables: dict) -> None:
    scaffold_rule = {"algorithms": [{"name": "scaffold", "args": {"lr": LR}}], "rule": ScaffoldServer()}
    got, fedavg = _loop(heart_tables, gamma=1.0, **scaffold_rule), _loop(heart_tables, gamma=1.0)
    assert max(float(np.abs(got[k] - fedavg[k]).max()) for k in got) > 1e-3


def test_fednova_gets_each_sites_steps(heart_tables: dict) -> None:
    """One round: the loop's FedNova equals aggregate_updates on what the sites sent with their steps."""
    sent: dict[str, dict] = {}

    def keep(name: str, weights: dict) -> dict:
        sent[name] = weights
        return weights

    task, sites = _task_sites(heart_tables)
    start = to_numpy(_model())
    model = run_loop(
        task,
        sites,
        _model(),
        rounds=1,
        lr=LR,
        local=LOCAL,
        seeds=SEEDS,
        rule=UpdateRule("fednova"),
        tamper=keep,
    ).model
    n_train = [s.n_train for s in sites]
    steps = [math.ceil(n / BATCH) for n in n_train]
    assert len(set(steps)) > 1  # unequal steps: FedNova differs from the mean
    updates = [{k: sent[s.name][k].astype("float64") - start[k] for k in start} for s in sites]
    update = aggregate_updates(updates, n_train, rule="fednova", steps=steps)
    for key, value in to_numpy(model).items():
        np.testing.assert_allclose(value, start[key] + update[key], atol=1e-6)
    mean = aggregate_updates(updates, n_train, rule="mean")
    assert max(float(np.abs(update[k] - mean[k]).max()) for k in update) > 1e-4


def test_dp_sgd_is_reproducible_and_within_its_budget(heart_tables: dict) -> None:
    task, sites = _task_sites(heart_tables)
    dp = {"algorithms": [{"name": "dp_sgd", "args": DP}]}
    result = run_loop(task, sites, _model(), rounds=2, lr=LR, gamma=GAMMA, local=LOCAL, seeds=SEEDS, **dp)
    again = _loop(heart_tables, rounds=2, **dp)
    plain = _loop(heart_tables, rounds=2)
    got = to_numpy(result.model)
    assert all(np.array_equal(got[k], again[k]) for k in got)
    assert max(float(np.abs(got[k] - plain[k]).max()) for k in got) > 1e-3
    for name, runner in result.runners.items():
        ledger = runner.algorithm("dp_sgd").trainer.ledger.to_dict()
        assert 0 < ledger["entries"][-1]["epsilon"] <= DP["target_epsilon"], name
    assert all(C.M_PRIVACY in m for m in result.rounds[-1].values())


def test_clustered_with_fixed_clusters_is_fedavg_inside_each(heart_tables: dict) -> None:
    groups = [["cleveland", "va_long_beach"], ["hungary", "switzerland"]]
    task, sites = _task_sites(heart_tables)
    result = run_loop(
        task,
        sites,
        _model(),
        rounds=2,
        lr=LR,
        local=LOCAL,
        seeds=SEEDS,
        rule=Clustered(0, fixed_clusters=groups),
    )
    assert result.rule.history == [groups, groups]
    names = list(heart_tables)
    for group in groups:
        sub = {n: heart_tables[n] for n in group}
        _, sub_sites = _task_sites(sub)
        seeds = [SEEDS[names.index(n)] for n in group]
        alone = run_loop(task, sub_sites, _model(), rounds=2, lr=LR, local=LOCAL, seeds=seeds)
        # the scaling is global over all four hospitals in the clustered run, over the group here
        got = to_numpy(result.site_models[group[0]])
        assert result.site_models[group[0]] is result.site_models[group[1]]
        assert set(got) == set(to_numpy(alone.model))


def test_ditto_sites_use_their_personal_models(heart_tables: dict) -> None:
    task, sites = _task_sites(heart_tables)
    ditto = [{"name": "ditto", "args": {"lam": 0.1}}]
    result = run_loop(task, sites, _model(), rounds=2, lr=LR, local=LOCAL, seeds=SEEDS, algorithms=ditto)
    for name, model in result.site_models.items():
        assert model is result.runners[name].algorithm("ditto").personal
        assert model is not result.model
    assert all("personal_auc" in m for m in result.rounds[-1].values())


def test_server_steps_give_every_site_the_global_scaling(heart_tables: dict) -> None:
    task, sites = _task_sites(heart_tables)
    with pytest.raises(RuntimeError, match="no feature scaling yet"):
        sites[0].arrays("train")
    server_steps(task, sites)
    x = np.concatenate([s.arrays("train")[0] for s in sites])
    released = [s.site.moments(min_cell=DEFAULT_MIN_CELL)["count"] for s in sites]
    whole = [j for j in range(x.shape[1]) if all(c[j] is not None for c in released)]
    withheld = [j for j in range(x.shape[1]) if j not in whole]
    assert withheld and len(whole) >= 5  # small one-hot cells (e.g. at switzerland) are withheld
    np.testing.assert_allclose(x.mean(axis=0)[whole], 0.0, atol=1e-5)  # float32 features
    for site, reference in zip(sites, _heart_sites(heart_tables), strict=True):
        np.testing.assert_array_equal(site.arrays("test")[0], reference.arrays("test")[0])


# (case, keyword arguments, message)
BAD_CASES = [
    ("no_rounds", {"rounds": 0}, "rounds must be at least 1"),
    ("seeds", {"seeds": [0, 1]}, "one seed per site: 4 sites, 2 seeds"),
    ("algorithm", {"algorithms": ["fedsgd"]}, "unknown client algorithm 'fedsgd'"),
    ("shared_plugin", {"algorithms": [FedProx(mu=0.1)]}, "each site builds its own"),
    ("scaffold_server_alone", {"rule": ScaffoldServer()}, r"needs \['scaffold_c_diff'\] from every site"),
]


@pytest.mark.parametrize(("case", "kwargs", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_arguments_fail_with_a_clear_error(heart_tables: dict, case: str, kwargs: dict, message) -> None:
    task, sites = _task_sites(heart_tables)
    with pytest.raises(ValueError, match=message):
        run_loop(task, sites, _model(), **{"rounds": 1, "lr": LR, "local": LOCAL, **kwargs})
