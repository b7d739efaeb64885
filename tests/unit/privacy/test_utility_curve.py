"""The privacy–utility curve's pieces: the in-process twin with DP-SGD, and the printed table."""

from __future__ import annotations

import pytest

from fedhealth.models.tabular import TabularNet
from fedhealth.training.heart_site import HeartSite
from fedhealth_tools.privacy.utility_curve import dp_trainer, table
from fedhealth_tools.training.federation import federated_scaling, run_federation

ROUNDS = 2


def _sites(heart_tables: dict) -> list[HeartSite]:
    sites = [HeartSite(name, train, test) for name, (train, test) in heart_tables.items()]
    federated_scaling(sites)
    return sites


def test_the_twin_trains_every_site_with_dp_sgd_to_the_target(heart_tables: dict) -> None:
    sites = _sites(heart_tables)
    trainer = dp_trainer(
        {"lr": 0.1, "max_grad_norm": 1.0, "batch_size": 16, "seed": 0, "rounds": ROUNDS}, 2.0
    )
    trainer(sites, lambda step, model: None)
    assert set(trainer.ledgers) == {s.name for s in sites}
    for name, ledger in trainer.ledgers.items():
        assert [e["round"] for e in ledger["entries"]] == [0, 1], name
        assert 1.9 < ledger["epsilon"] <= 2.0, name


def test_a_site_past_its_budget_sends_nothing_in_the_twin(heart_tables: dict) -> None:
    sites = _sites(heart_tables)
    dp = {"target_epsilon": 2.0, "rounds": ROUNDS}  # sized for 2 rounds; a third exceeds every budget
    result = run_federation(
        sites, lambda: TabularNet(in_features=14), rounds=ROUNDS + 1, lr=0.1, batch_size=16, dp=dp
    )
    for ledger in result.ledgers.values():
        assert len(ledger["entries"]) == ROUNDS and ledger["declined"]["round"] == ROUNDS


def test_table_reports_the_loss_against_no_dp() -> None:
    rows = [
        {
            "target_epsilon": 1.0,
            "achieved_epsilon": 0.998,
            "delta": 3.3e-3,
            "metric_mean": 0.70,
            "metric_sd": 0.01,
        },
        {
            "target_epsilon": None,
            "achieved_epsilon": None,
            "delta": None,
            "metric_mean": 0.72,
            "metric_sd": 0.02,
        },
    ]
    text = table({"rows": rows})
    assert "| 1 | 0.998 | 3.3e-03 | 0.700 ± 0.010 | -2.0 pts |" in text
    assert "| ∞ (no DP) | – | – | 0.720 ± 0.020 | +0.0 pts |" in text


@pytest.mark.parametrize("epsilon", [None])
def test_no_dp_has_no_ledger(heart_tables: dict, epsilon: float | None) -> None:
    trainer = dp_trainer({"lr": 0.1, "max_grad_norm": 1.0, "batch_size": 16, "seed": 0, "rounds": 1}, epsilon)
    trainer(_sites(heart_tables), lambda step, model: None)
    assert trainer.ledgers == {}
