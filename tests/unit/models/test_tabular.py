"""TabularNet: logistic regression and MLP with one logit per patient and seeded weights."""

from __future__ import annotations

import pytest
import torch

from fedhealth.models.tabular import TabularNet

# (arch, extra args, parameter names and shapes for in_features=13)
ARCH_CASES = [
    ("logreg", {}, {"net.weight": (1, 13), "net.bias": (1,)}),
    (
        "mlp",
        {"hidden": 8},
        {"net.0.weight": (8, 13), "net.0.bias": (8,), "net.3.weight": (1, 8), "net.3.bias": (1,)},
    ),
]
# (constructor args, message)
BAD_ARGS = [
    ({"in_features": 13, "arch": "cnn"}, "arch must be one of"),
    ({"in_features": 13, "arch": "LogReg"}, "not 'LogReg'"),
    ({"in_features": 0}, "in_features must be positive, got 0"),
]


@pytest.mark.parametrize(("arch", "extra", "shapes"), ARCH_CASES)
@pytest.mark.parametrize("batch", [1, 5])
def test_output_is_one_logit_per_row(arch: str, extra: dict, shapes: dict, batch: int) -> None:
    model = TabularNet(in_features=13, arch=arch, **extra)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    out = model(torch.randn(batch, 13))
    assert out.shape == (batch,)


@pytest.mark.parametrize(("arch", "extra", "shapes"), ARCH_CASES)
def test_same_seed_same_weights(arch: str, extra: dict, shapes: dict) -> None:
    a = TabularNet(in_features=13, arch=arch, seed=7, **extra).state_dict()
    b = TabularNet(in_features=13, arch=arch, seed=7, **extra).state_dict()
    c = TabularNet(in_features=13, arch=arch, seed=8, **extra).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_seeding_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TabularNet(in_features=13, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_constructor_args_are_kept() -> None:
    model = TabularNet(in_features=14, arch="mlp", hidden=4, dropout=0.2, seed=3)
    assert (model.in_features, model.arch, model.hidden, model.dropout, model.seed) == (14, "mlp", 4, 0.2, 3)


@pytest.mark.parametrize(("args", "message"), BAD_ARGS)
def test_bad_arguments_raise(args: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TabularNet(**args)
