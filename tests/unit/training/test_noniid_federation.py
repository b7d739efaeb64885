"""The non-IID twin on the four hospitals: FedOpt reduces to FedAvg, SCAFFOLD's first round is
FedAvg's, Ditto at lambda = infinity serves the global model, clustered FL finds flipped sites."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fedhealth.models.tabular import TabularNet
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.training.federation import federated_scaling, run_federation
from fedhealth_tools.training.noniid_federation import run_noniid
from fedhealth_tools.training.noniid_trainers import noniid_trainer

SETTINGS = {"lr": 0.05, "gamma": 0.9, "seed": 1, "batch_size": 8}
# (algorithm options equal to FedAvg, rounds)
FEDAVG_EQUIVALENTS = [
    ("fedopt", {"server_opt": "sgd", "server_lr": 1.0, "beta1": 0.0}, 3),
    ("scaffold", {}, 1),  # the variates start at 0: round 1 is FedAvg
    ("clustered", {"split_round": 99}, 3),  # never splits
]


def _sites(heart_tables: dict, flip: tuple[str, ...] = ()) -> list[HeartSite]:
    sites = []
    for name, (train, test) in heart_tables.items():
        sites.append(HeartSite(name, train, test))
        if name in flip:  # the same patients with the opposite label map
            flipped = [dataclasses.replace(t, labels=1 - t.labels) for t in (train, test)]
            sites.append(HeartSite(f"{name}_flipped", *flipped))
    federated_scaling(sites)
    return sites


def _model() -> TabularNet:
    return TabularNet(in_features=14, seed=0)


def _weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("algorithm", "options", "rounds"), FEDAVG_EQUIVALENTS)
def test_special_cases_equal_fedavg(heart_tables, algorithm, options, rounds):
    sites = _sites(heart_tables)
    want = _weights(run_federation(sites, _model, rounds=rounds, **SETTINGS).model)
    got = run_noniid(sites, _model, algorithm=algorithm, rounds=rounds, options=options, **SETTINGS)
    for k, v in want.items():
        np.testing.assert_allclose(_weights(got.model)[k], v, atol=1e-6)


def test_scaffold_differs_from_fedavg_after_round_one(heart_tables):
    sites = _sites(heart_tables)
    want = _weights(run_federation(sites, _model, rounds=3, **SETTINGS).model)
    got = _weights(run_noniid(sites, _model, algorithm="scaffold", rounds=3, **SETTINGS).model)
    assert max(float(np.abs(got[k] - want[k]).max()) for k in want) > 1e-3


def test_ditto_with_infinite_lambda_serves_the_global_model(heart_tables):
    sites = _sites(heart_tables)
    seen = []
    result = run_noniid(
        sites,
        _model,
        algorithm="ditto",
        rounds=2,
        options={"lam": float("inf")},
        on_round=lambda r, models: seen.append({n: _weights(m) for n, m in models.items()}),
        **SETTINGS,
    )
    start = _weights(_model())
    round_one = _weights(run_federation(sites, _model, rounds=1, **SETTINGS).model)
    for name in (s.name for s in sites):  # personal = the global model each site received
        for k in start:
            np.testing.assert_allclose(seen[0][name][k], start[k], atol=1e-7)
            np.testing.assert_allclose(seen[1][name][k], round_one[k], atol=1e-6)
    assert set(result.site_models) == {s.name for s in sites}


def test_clustered_fl_separates_sites_with_flipped_labels(heart_tables):
    sites = _sites(heart_tables, flip=("cleveland", "hungary"))
    result = run_noniid(
        sites,
        _model,
        algorithm="clustered",
        rounds=4,
        options={"split_round": 1, "split_threshold": 0.0},
        **SETTINGS,
    )
    assert result.clusters[0] == [[s.name for s in sites]]  # before the split round: one cluster
    final = {frozenset(g) for g in result.clusters[-1]}
    flipped = frozenset({"cleveland_flipped", "hungary_flipped"})
    assert final == {flipped, frozenset(s.name for s in sites) - flipped}
    assert result.site_models["cleveland_flipped"] is result.site_models["hungary_flipped"]
    assert result.site_models["cleveland"] is not result.site_models["cleveland_flipped"]


def test_metadata_clusters_are_used_from_their_round(heart_tables):
    sites = _sites(heart_tables)
    groups = [["hungary", "switzerland"], ["cleveland", "va_long_beach"]]
    result = run_noniid(
        sites,
        _model,
        algorithm="clustered",
        rounds=3,
        options={"fixed_clusters": groups, "split_round": 1},
        **SETTINGS,
    )
    assert result.clusters == [[[s.name for s in sites]], groups, groups]
    assert result.site_models["hungary"] is result.site_models["switzerland"]


def test_trainer_reports_one_model_per_site_each_round(heart_tables):
    sites = _sites(heart_tables)
    steps = []
    params = {
        "algorithm": "fedopt",
        "arch": "logreg",
        "rounds": 3,
        "lr": 0.05,
        "seed": 0,
        "server_opt": "adam",
    }
    models = noniid_trainer(params)(sites, lambda step, model: steps.append((step, sorted(model))))
    assert steps == [(r, sorted(s.name for s in sites)) for r in (1, 2, 3)]
    assert set(models) == {s.name for s in sites}
    assert isinstance(noniid_trainer({**params, "serve": "global"})(sites, lambda s, m: None), TabularNet)


def test_unknown_algorithm_is_refused(heart_tables):
    with pytest.raises(ValueError, match="algorithm must be one of"):
        run_noniid(_sites(heart_tables), _model, algorithm="fedbn", rounds=1, lr=0.1)


def test_result_keeps_each_rounds_site_metrics(heart_tables):
    sites = _sites(heart_tables)
    result = run_noniid(
        sites, _model, algorithm="fedopt", rounds=2, options={"server_opt": "adam"}, **SETTINGS
    )
    assert len(result.rounds) == 2
    assert all(set(r) == {s.name for s in sites} for r in result.rounds)
    assert all(m["steps"] > 0 for r in result.rounds for m in r.values())
