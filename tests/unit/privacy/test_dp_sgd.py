"""DP-SGD trainer: ε equals Opacus's accountant, the ledger survives a restart, models are fixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from torch import nn

from fedhealth import constants as C
from fedhealth.models.cnn import SmallCNN, build_image_model
from fedhealth.models.tabular import TabularNet
from fedhealth.privacy.budget import PrivacyBudgetExhaustedError
from fedhealth.privacy.dp_config import DPConfig
from fedhealth.privacy.dp_sgd import PrivateTrainer, make_dp_compatible

# Golden values, computed with Opacus 1.6.0 directly: (sigma, q, steps, delta, RDP epsilon).
GOLDEN_RDP = [
    (1.0, 0.05, 100, 1e-5, 4.038336159696808),
    (1.5087890625, 0.1, 50, 1e-3, 1.91046658735431),
    (0.8, 0.25, 40, 1e-3, 13.849260458929368),
]
# (n, batch, steps a round, rounds, target epsilon, accountant)
PLANS = [
    (150, 16, 10, 5, 2.0, "rdp"),
    (150, 8, 5, 4, 1.0, "rdp"),
    (80, 10, 8, 3, 5.0, "prv"),
]
ACCOUNTANTS = {"rdp": RDPAccountant, "prv": PRVAccountant}


def _data(n: int, d: int = 14, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype("float32")


def _trainer(n: int, batch: int, steps: int, rounds: int, eps: float, acc: str, **kw) -> PrivateTrainer:
    x, y = _data(n)
    dp = DPConfig(target_epsilon=eps, accountant=acc)
    return PrivateTrainer(
        TabularNet(in_features=14), x, y, dp, batch_size=batch, steps_per_round=steps, rounds=rounds, **kw
    )


@pytest.mark.parametrize(("sigma", "q", "steps", "delta", "epsilon"), GOLDEN_RDP)
def test_opacus_golden_values_still_hold(
    sigma: float, q: float, steps: int, delta: float, epsilon: float
) -> None:
    accountant = RDPAccountant()
    accountant.history = [(sigma, q, steps)]
    assert accountant.get_epsilon(delta) == pytest.approx(epsilon, rel=1e-9)


@pytest.mark.parametrize(("n", "batch", "steps", "rounds", "eps", "acc"), PLANS)
def test_epsilon_equals_opacus_accountant_for_the_same_steps(n, batch, steps, rounds, eps, acc) -> None:
    trainer = _trainer(n, batch, steps, rounds, eps, acc)
    q = 1 / int(np.ceil(n / batch))
    delta = 0.1 / n
    assert trainer.sample_rate == q and trainer.delta == pytest.approx(delta)
    sigma = get_noise_multiplier(
        target_epsilon=eps, target_delta=delta, sample_rate=q, steps=steps * rounds, accountant=acc
    )
    assert trainer.noise_multiplier == sigma
    model = TabularNet(in_features=14)
    for r in range(rounds):
        entry = trainer.train_round(model, lr=0.1, round_index=r)[C.M_PRIVACY]
        reference = ACCOUNTANTS[acc]()
        reference.history = [(sigma, q, steps * (r + 1))]
        assert entry["epsilon"] == pytest.approx(reference.get_epsilon(delta), rel=1e-6)
        assert (entry["steps"], entry["total_steps"], entry["round"]) == (steps, steps * (r + 1), r)
    assert entry["epsilon"] <= eps + 1e-6  # the plan ends within the target
    assert entry["epsilon"] > 0.5 * eps  # and spends most of it (the noise is not oversized)


def test_budget_declines_the_round_past_the_plan(tmp_path: Path) -> None:
    trainer = _trainer(150, 16, 10, 3, 2.0, "rdp", state_dir=tmp_path)
    model = TabularNet(in_features=14)
    for r in range(3):
        trainer.train_round(model, lr=0.1, round_index=r)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PrivacyBudgetExhaustedError) as info:
        trainer.train_round(model, lr=0.1, round_index=3)
    assert str(info.value).startswith(f"{C.DP_DECLINED}: round 3 would raise epsilon from ")
    assert "past this site's budget of 2.000" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing trained
    assert trainer.total_steps == 30
    ledger = json.loads((tmp_path / C.DP_LEDGER_FILE).read_text())
    assert ledger["declined"]["round"] == 3 and ledger["declined"]["predicted_epsilon"] > 2.0
    assert [e["round"] for e in ledger["entries"]] == [0, 1, 2]


def test_a_site_budget_below_the_target_stops_early() -> None:
    trainer = _trainer(150, 16, 10, 5, 4.0, "rdp", budget=3.0)
    model = TabularNet(in_features=14)
    done = []
    with pytest.raises(PrivacyBudgetExhaustedError):
        for r in range(5):
            done.append(trainer.train_round(model, lr=0.1, round_index=r)[C.M_PRIVACY]["epsilon"])
    assert 1 <= len(done) < 5 and done[-1] <= 3.0 and trainer.budget == 3.0


def test_ledger_and_accountant_survive_a_site_restart(tmp_path: Path) -> None:
    plan = (150, 16, 10, 4, 3.0, "rdp")
    steady = _trainer(*plan)
    model = TabularNet(in_features=14)
    expected = [steady.train_round(model, lr=0.1, round_index=r)[C.M_PRIVACY]["epsilon"] for r in range(4)]
    first = _trainer(*plan, state_dir=tmp_path)
    for r in range(2):
        first.train_round(model, lr=0.1, round_index=r)
    restarted = _trainer(*plan, state_dir=tmp_path)  # a new process of the same job
    assert restarted.epsilon == pytest.approx(expected[1]) and restarted.total_steps == 20
    assert [e.round for e in restarted.ledger.entries] == [0, 1]
    after = [restarted.train_round(model, lr=0.1, round_index=r)[C.M_PRIVACY]["epsilon"] for r in (2, 3)]
    assert after == pytest.approx(expected[2:])
    saved = json.loads((tmp_path / C.DP_LEDGER_FILE).read_text())
    assert [e["epsilon"] for e in saved["entries"]] == pytest.approx(expected)


@pytest.mark.parametrize("arch", ["logreg", "mlp"])
def test_tabular_models_need_no_change_and_learn(arch: str) -> None:
    model = TabularNet(in_features=14, arch=arch, hidden=8)
    assert make_dp_compatible(model) == (model, [])
    x, y = _data(200)
    dp = DPConfig(target_epsilon=10.0, max_grad_norm=1.0)
    trainer = PrivateTrainer(model, x, y, dp, batch_size=32, steps_per_round=20, rounds=5, seed=3)
    start = nn.BCEWithLogitsLoss()(model(torch.as_tensor(x)), torch.as_tensor(y)).item()
    for r in range(5):
        trainer.train_round(model, lr=0.5, round_index=r)
    end = nn.BCEWithLogitsLoss()(model(torch.as_tensor(x)), torch.as_tensor(y)).item()
    assert end < start - 0.05


class _BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(
    ("make", "batchnorms", "shape"),
    [(_BNNet, 1, (1, 12, 12)), (lambda: build_image_model("densenet121"), 121, (1, 32, 32))],
)
def test_batchnorm_models_are_fixed_and_train(make, batchnorms: int, shape: tuple) -> None:
    model = make()
    assert _count(model, nn.modules.batchnorm._BatchNorm) == batchnorms
    fixed, changes = make_dp_compatible(model)
    assert _count(fixed, nn.modules.batchnorm._BatchNorm) == 0 and _count(fixed, nn.GroupNorm) == batchnorms
    assert changes[0].startswith(f"{batchnorms} modules replaced (BatchNorm cannot support training")
    assert not any(getattr(m, "inplace", False) for m in fixed.modules())
    x = np.random.default_rng(0).normal(size=(16, *shape)).astype("float32")
    y = (np.arange(16) % 2).astype("float32")
    trainer = PrivateTrainer(
        model, x, y, DPConfig(target_epsilon=5.0), batch_size=8, steps_per_round=1, rounds=2
    )
    assert trainer.changes == changes
    with pytest.raises(ValueError, match="make_dp_compatible on the server too"):
        trainer.train_round(model, lr=0.01, round_index=0)  # a BatchNorm global model does not fit
    stats = trainer.train_round(fixed, lr=0.01, round_index=0)
    assert stats["steps"] == 1 and stats[C.M_PRIVACY]["epsilon"] > 0


def test_small_cnn_needs_no_change() -> None:
    model = SmallCNN()
    assert make_dp_compatible(model) == (model, [])


@pytest.mark.parametrize("mode", ["hooks", "functorch", "ew", "ghost"])
def test_every_grad_sample_mode_trains_and_accounts_alike(mode: str) -> None:
    x, y = _data(100)
    model = TabularNet(in_features=14, arch="mlp", hidden=8)
    dp = DPConfig(target_epsilon=5.0, grad_sample_mode=mode)
    trainer = PrivateTrainer(model, x, y, dp, batch_size=16, steps_per_round=3, rounds=2, seed=0)
    stats = trainer.train_round(model, lr=0.1, round_index=0)
    assert np.isfinite(stats["train_loss"]) and stats["steps"] == 3
    reference = RDPAccountant()
    reference.history = [(trainer.noise_multiplier, 1 / 7, 3)]
    assert stats[C.M_PRIVACY]["epsilon"] == pytest.approx(reference.get_epsilon(0.001), rel=1e-9)
