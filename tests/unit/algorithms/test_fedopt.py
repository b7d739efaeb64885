"""FedOpt (Reddi et al. 2021): FedAvg as the special case, and one step of each adaptive rule by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedhealth.algorithms.fedopt import ServerOptimizer, averaged_delta
from fedhealth.training.aggregation import weighted_average

RNG = np.random.default_rng(0)
X = {"w": RNG.normal(size=(3, 2)), "b": RNG.normal(size=2)}
SITES = [{k: v + RNG.normal(size=v.shape) for k, v in X.items()} for _ in range(3)]
N = [10.0, 30.0, 60.0]
# kind, delta, expected new x for x = 0, lr 0.1, beta1 0.9, beta2 0.99, tau 1e-3 (first step, v0 = tau^2)
D, T = 0.5, 1e-3
M = 0.1 * D
ONE_STEP = [
    ("adagrad", 0.1 * M / (np.sqrt(T**2 + D**2) + T)),
    ("adam", 0.1 * M / (np.sqrt(0.99 * T**2 + 0.01 * D**2) + T)),
    ("yogi", 0.1 * M / (np.sqrt(T**2 + 0.01 * D**2) + T)),  # v0 < d^2: Yogi adds (1 - beta2) d^2
    ("sgd", 0.1 * M),
]


@pytest.mark.parametrize("rounds", [1, 3])
def test_sgd_with_server_lr_one_is_fedavg(rounds):
    opt, x = ServerOptimizer(kind="sgd", lr=1.0, beta1=0.0), dict(X)
    for _ in range(rounds):
        fedavg = weighted_average(SITES, N)
        x = opt.step(x, averaged_delta(x, fedavg))
        for k in X:
            np.testing.assert_allclose(x[k], fedavg[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("kind", "expected"), ONE_STEP)
def test_first_step_matches_the_paper(kind, expected):
    opt = ServerOptimizer(kind=kind, lr=0.1, beta1=0.9, beta2=0.99, tau=T)
    out = opt.step({"w": np.zeros(1)}, {"w": np.array([D])})
    assert out["w"][0] == pytest.approx(expected, rel=1e-12)


def test_state_round_trips():
    opt = ServerOptimizer(kind="yogi")
    opt.step(X, {k: np.ones_like(v) for k, v in X.items()})
    twin = ServerOptimizer(kind="yogi")
    twin.load_state_dict(opt.state_dict())
    step = {k: -np.ones_like(v) for k, v in X.items()}
    a, b = opt.step(X, step), twin.step(X, step)
    for k in X:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "rmsprop"}, "must be one of"),
        ({"lr": 0.0}, "server learning rate must be positive"),
        ({"beta1": 1.0}, "beta1 and beta2"),
        ({"tau": 0.0}, "tau must be positive"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServerOptimizer(**kwargs)
