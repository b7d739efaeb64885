"""SCAFFOLD on two sites with quadratic losses f_i(x) = a_i / 2 * (x - b_i)^2, where everything is known.

Local gradient descent from x for K steps at lr eta ends at y_i = b_i + (1 - eta a_i)^K (x - b_i), so
option II's first variate is c_i = (x - y_i) / (K eta); SCAFFOLD must converge to the optimum of the
average loss, x* = (a_1 b_1 + a_2 b_2) / (a_1 + a_2), where FedAvg with K > 1 stops short of it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedhealth.algorithms import scaffold

# (a_1, a_2, b_1, b_2, local steps K, local lr eta)
CASES = [
    (1.0, 4.0, -1.0, 2.0, 5, 0.1),
    (2.0, 0.5, 3.0, -3.0, 10, 0.05),
    (1.0, 1.0, 0.0, 1.0, 1, 0.2),
]


class Quad(nn.Module):
    def __init__(self, x: float) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.tensor([x], dtype=torch.float64))


def local_gd(x0: float, a: float, b: float, steps: int, lr: float, corr: float) -> float:
    """K SGD steps on a/2 (x-b)^2 through torch, with SCAFFOLD's gradient hook."""
    model = Quad(x0)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with scaffold.corrected_gradients(model, {"x": np.array([corr])}):
        for _ in range(steps):
            opt.zero_grad()
            (0.5 * a * (model.x - b) ** 2).sum().backward()
            opt.step()
    return float(model.x.detach())


def run(a, b, steps, lr, rounds, *, use_scaffold: bool) -> float:
    x, c = {"x": np.array([0.0])}, {"x": np.array([0.0])}
    cs = [{"x": np.array([0.0])} for _ in a]
    for _ in range(rounds):
        dys, dcs = [], []
        for i in range(len(a)):
            corr = scaffold.correction(c, cs[i])["x"][0] if use_scaffold else 0.0
            y = {"x": np.array([local_gd(float(x["x"][0]), a[i], b[i], steps, lr, corr)])}
            cs[i], dc = scaffold.update_local_control(cs[i], c, x, y, steps=steps, lr=lr)
            dys.append({"x": y["x"] - x["x"]})
            dcs.append(dc)
        x, new_c = scaffold.server_update(x, c, dys, dcs, n_sites=len(a))
        c = new_c if use_scaffold else c
    return float(x["x"][0])


@pytest.mark.parametrize(("a1", "a2", "b1", "b2", "steps", "lr"), CASES)
def test_first_control_variate_is_the_mean_gradient_along_the_path(a1, a2, b1, b2, steps, lr):
    x0 = 0.5
    for a, b in ((a1, b1), (a2, b2)):
        y = local_gd(x0, a, b, steps, lr, corr=0.0)
        assert y == pytest.approx(b + (1 - lr * a) ** steps * (x0 - b), abs=1e-12)
        zero = {"x": np.array([0.0])}
        c_new, dc = scaffold.update_local_control(
            zero, zero, {"x": np.array([x0])}, {"x": np.array([y])}, steps=steps, lr=lr
        )
        expected = (1 - (1 - lr * a) ** steps) * (x0 - b) / (steps * lr)
        assert c_new["x"][0] == pytest.approx(expected, abs=1e-12)
        assert dc["x"][0] == pytest.approx(expected, abs=1e-12)
        if steps == 1:  # one step: the variate is the gradient at x itself
            assert c_new["x"][0] == pytest.approx(a * (x0 - b))


@pytest.mark.parametrize(("a1", "a2", "b1", "b2", "steps", "lr"), CASES)
def test_scaffold_reaches_the_optimum_of_the_average_loss(a1, a2, b1, b2, steps, lr):
    optimum = (a1 * b1 + a2 * b2) / (a1 + a2)
    got = run((a1, a2), (b1, b2), steps, lr, rounds=300, use_scaffold=True)
    assert got == pytest.approx(optimum, abs=1e-6)
    if steps > 1 and a1 != a2:  # client drift: FedAvg converges elsewhere
        assert abs(run((a1, a2), (b1, b2), steps, lr, rounds=300, use_scaffold=False) - optimum) > 1e-2


def test_gradient_hook_adds_the_correction_and_is_removed():
    model = Quad(1.0)
    with scaffold.corrected_gradients(model, {"x": np.array([0.25])}):
        (0.5 * 2.0 * (model.x - 0.0) ** 2).sum().backward()
    assert float(model.x.grad) == pytest.approx(2.0 + 0.25)
    model.x.grad = None
    (0.5 * 2.0 * model.x**2).sum().backward()
    assert float(model.x.grad) == pytest.approx(2.0)


@pytest.mark.parametrize(("answered", "n_sites", "expected_c"), [(2, 2, 1.5), (2, 4, 0.75)])
def test_server_scales_the_variate_step_by_the_fraction_that_answered(answered, n_sites, expected_c):
    x, c = {"w": np.array([1.0])}, {"w": np.array([0.0])}
    dys = [{"w": np.array([1.0])}, {"w": np.array([3.0])}][:answered]
    dcs = [{"w": np.array([1.0])}, {"w": np.array([2.0])}][:answered]
    new_x, new_c = scaffold.server_update(x, c, dys, dcs, n_sites=n_sites, global_lr=0.5)
    assert new_x["w"][0] == pytest.approx(1.0 + 0.5 * 2.0)
    assert new_c["w"][0] == pytest.approx(expected_c)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"steps": 0, "lr": 0.1}, "at least one local step"), ({"steps": 1, "lr": 0.0}, "must be positive")],
)
def test_bad_local_update_arguments_are_refused(kwargs, message):
    z = {"w": np.zeros(2)}
    with pytest.raises(ValueError, match=message):
        scaffold.update_local_control(z, z, z, z, **kwargs)


def test_mismatched_names_are_refused():
    with pytest.raises(ValueError, match="same parameter names"):
        scaffold.correction({"w": np.zeros(1)}, {"v": np.zeros(1)})
