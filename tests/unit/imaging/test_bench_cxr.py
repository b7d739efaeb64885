"""``scripts/bench_cxr.py``'s bookkeeping: the winner is chosen on validation, ratios, joined runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("bench_cxr", ROOT / "scripts" / "bench_cxr.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _row(val: float, test: float) -> dict:
    return {"val_auc": val, "auc": test, "accuracy": 0.9, "per_site": {}}


def _run(methods: dict, *, seed: int = 0, seconds: float = 10.0) -> dict:
    return {
        "dataset": {"source": "pneumoniamnist.npz", "alpha": 0.5, "seed": seed, "sites": {}},
        "methods": methods,
        "hardware": {"load_average_start": [1.0, 1.0, 1.0], "load_average": [2.0, 2.0, 2.0]},
        "seconds": seconds,
    }


def test_the_winner_is_chosen_on_validation_not_on_test() -> None:
    methods = {"centralized": _row(0.99, 0.96), "fedavg": _row(0.98, 0.95), "fedadam": _row(0.985, 0.90)}
    assert bench._selected(methods) == "fedadam"
    assert bench._selected({"centralized": _row(0.99, 0.96)}) is None


def test_every_federated_method_gets_its_ratio_to_centralized() -> None:
    methods = {"centralized": _row(0.99, 0.96), "fedavg": _row(0.98, 0.912), "scaffold": _row(0.97, 0.96)}
    ratios = bench._ratios(methods)
    expected = {"fedavg_over_centralized_auc": 0.95, "scaffold_over_centralized_auc": 1.0}
    assert ratios == pytest.approx(expected)
    assert methods["fedavg"]["ratio"] == pytest.approx(0.95)
    assert "ratio" not in methods["centralized"]
    assert bench._ratios({"fedavg": _row(0.98, 0.9)}) == {}


def test_joined_runs_hold_every_method_the_winner_and_the_aim() -> None:
    first = _run({"fedavg_e5": _row(0.985, 0.9552), "local": _row(0.9, 0.9)}, seconds=30.0)
    second = _run({"centralized": _row(0.99, 0.96), "fedavg": _row(0.98, 0.95)}, seconds=12.0)
    merged = bench.merge([first, second])
    assert list(merged["methods"]) == ["centralized", "fedavg", "fedavg_e5", "local"]
    assert merged["selected"]["method"] == "fedavg_e5"
    assert merged["selected"]["ratio"] == pytest.approx(0.995)
    assert merged["selected"]["aim_met"] is True
    assert [p["methods"] for p in merged["parts"]] == [["fedavg_e5", "local"], ["centralized", "fedavg"]]
    assert merged["seconds"] == pytest.approx(42.0)


def test_runs_of_different_seeds_are_not_joined() -> None:
    with pytest.raises(SystemExit, match="differ in data set, alpha or seed"):
        bench.merge([_run({}), _run({}, seed=1)])


def test_every_federated_method_runs_the_same_passes_over_the_local_data() -> None:
    for name, spec in bench.FEDERATED.items():
        assert spec.get("local_epochs", 1) == spec.get("rounds_scale", 1), name
