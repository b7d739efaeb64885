"""In-process federation over the four hospitals: FedAvg, FedProx, scaling, learning-rate schedule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fedhealth.data.features import combine_moments, feature_names
from fedhealth.models.tabular import TabularNet
from fedhealth.privacy.small_cells import DEFAULT_MIN_CELL
from fedhealth.training.aggregation import weighted_average
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import LocalTrainConfig
from fedhealth.training.schedule import lr_for_round
from fedhealth_tools.training.federation import federated_scaling, run_federation

# (lr, gamma, round, expected)
LR_CASES = [
    (0.1, 0.95, 3, 0.1 * 0.95**3),
    (0.01, 1.0, 9, 0.01),
    (0.5, 0.5, 0, 0.5),
    (0.5, 0.5, 2, 0.125),
]
ROUNDS = 3
SETTINGS = {"lr": 0.05, "gamma": 0.9, "seed": 1, "batch_size": 8}


def _sites(heart_tables: dict) -> list[HeartSite]:
    sites = [HeartSite(name, train, test) for name, (train, test) in heart_tables.items()]
    federated_scaling(sites)
    return sites


def _model() -> TabularNet:
    return TabularNet(in_features=14, seed=0)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _distance(a: dict, b: dict) -> float:
    return float(sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5)


@pytest.mark.parametrize(("lr", "gamma", "round_index", "expected"), LR_CASES)
def test_lr_for_round(lr: float, gamma: float, round_index: int, expected: float) -> None:
    assert lr_for_round(lr, gamma, round_index) == expected


def test_federated_scaling_sets_global_stats_everywhere(heart_tables: dict) -> None:
    sites = [HeartSite(name, train, test) for name, (train, test) in heart_tables.items()]
    assert all(site.scaler is None for site in sites)
    stats = federated_scaling(sites)
    released = [site.moments(min_cell=DEFAULT_MIN_CELL) for site in sites]  # small cells withheld
    assert stats == combine_moments(released)
    for site in sites:
        np.testing.assert_array_equal(site.scaler.mean, stats["mean"])
    pooled = np.concatenate([site.arrays("train")[0] for site in sites])
    chol = feature_names(True).index("chol")
    observed = np.concatenate(
        [(train.features["chol"] != 0).to_numpy() for train, _ in heart_tables.values()]
    )
    whole = [
        j for j in range(pooled.shape[1]) if j != chol and all(m["count"][j] is not None for m in released)
    ]
    assert len(whole) >= 5  # continuous features every site releases: the pooled mean is exactly 0
    np.testing.assert_allclose(pooled[:, whole].mean(0), 0.0, atol=1e-5)
    assert pooled[observed, chol].mean() == pytest.approx(0.0, abs=1e-5)
    assert pooled[observed, chol].std(ddof=1) == pytest.approx(1.0, rel=1e-4)


def test_fedprox_mu_zero_equals_fedavg(heart_tables: dict) -> None:
    fedavg = run_federation(_sites(heart_tables), _model, rounds=ROUNDS, **SETTINGS)
    fedprox = run_federation(_sites(heart_tables), _model, rounds=ROUNDS, mu=0.0, **SETTINGS)
    assert _equal(_state(fedavg.model), _state(fedprox.model))
    assert not _equal(_state(fedavg.model), _state(_model()))


def test_run_federation_is_sample_weighted_fedavg(heart_tables: dict) -> None:
    """The same rounds written out by hand: local SGD from the global model, average by n_train."""
    sites = _sites(heart_tables)
    result = run_federation(sites, _model, rounds=ROUNDS, **SETTINGS)
    sites = _sites(heart_tables)
    global_model = _model()
    generators = [torch.Generator().manual_seed(SETTINGS["seed"] * 1000 + i) for i in range(len(sites))]
    for r in range(ROUNDS):
        config = LocalTrainConfig(
            lr=SETTINGS["lr"] * SETTINGS["gamma"] ** r, batch_size=SETTINGS["batch_size"]
        )
        states = []
        for site, gen in zip(sites, generators, strict=True):
            local = copy.deepcopy(global_model)
            site.train_round(local, config, generator=gen)
            states.append({k: v.numpy() for k, v in local.state_dict().items()})
        averaged = weighted_average(states, [199, 172, 30, 85])
        global_model.load_state_dict(
            {k: torch.as_tensor(v, dtype=torch.float32) for k, v in averaged.items()}
        )
    assert _equal(_state(result.model), _state(global_model))


def test_fedprox_stays_closer_to_the_start(heart_tables: dict) -> None:
    start = _state(_model())
    fedavg = run_federation(_sites(heart_tables), _model, rounds=ROUNDS, **SETTINGS)
    fedprox = run_federation(_sites(heart_tables), _model, rounds=ROUNDS, mu=1.0, **SETTINGS)
    avg_state, prox_state = _state(fedavg.model), _state(fedprox.model)
    assert not _equal(avg_state, prox_state)
    assert _distance(prox_state, start) < _distance(avg_state, start)


def test_seed_changes_the_result_and_is_reproducible(heart_tables: dict) -> None:
    settings = {**SETTINGS, "seed": 2}
    a = run_federation(_sites(heart_tables), _model, rounds=1, **settings)
    b = run_federation(_sites(heart_tables), _model, rounds=1, **settings)
    c = run_federation(_sites(heart_tables), _model, rounds=1, **SETTINGS)
    assert _equal(_state(a.model), _state(b.model))
    assert not _equal(_state(a.model), _state(c.model))


def test_history_and_callback(heart_tables: dict) -> None:
    seen: list[int] = []
    result = run_federation(
        _sites(heart_tables),
        _model,
        rounds=ROUNDS,
        track=True,
        on_round=lambda r, model: seen.append(r),
        **SETTINGS,
    )
    assert seen == list(range(ROUNDS))
    assert len(result.history) == ROUNDS
    assert all(set(h) == {"cleveland", "hungary", "switzerland", "va_long_beach"} for h in result.history)
    first = result.history[0]["cleveland"]
    assert (first["n_train"], first["n_test"]) == (199.0, 104.0)
    assert 0.0 <= first["accuracy"] <= 1.0


def test_bad_local_setting_fails_before_training(heart_tables: dict) -> None:
    with pytest.raises(ValueError, match="mu"):
        run_federation(_sites(heart_tables), _model, rounds=1, lr=0.1, mu=-1.0)


def _x100(site: str, state: dict) -> dict:
    return {k: v * 100.0 for k, v in state.items()} if site == "va_long_beach" else state


def test_median_survives_a_x100_site_that_breaks_the_mean(heart_tables: dict) -> None:
    def run(rule: str, tamper=None) -> dict:
        sites = _sites(heart_tables)
        return _state(run_federation(sites, _model, rounds=3, lr=0.03, rule=rule, tamper=tamper).model)

    clean = run("mean")
    assert _equal(run("mean"), clean)  # the rule path leaves plain FedAvg unchanged
    broken, robust = run("mean", _x100), run("median", _x100)
    assert _distance(broken, clean) > 10 * _distance(robust, clean)
    assert all(torch.isfinite(v).all() for v in robust.values())
