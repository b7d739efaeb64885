"""``fedhealth privacy-audit --quick`` on a shipped heart job: the command, the JSON and the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth_tools.cli import main

ROOT = Path(__file__).resolve().parents[4]


def test_the_quick_audit_of_heart_he_writes_the_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "audit.json"
    assert (
        main(["privacy-audit", "--job", str(ROOT / "jobs" / "heart_he"), "--quick", "--out", str(out)]) == 0
    )
    result = json.loads(out.read_text())
    assert result["job"] == "heart_he" and result["data"] == "heart"
    assert result["floors"] == {"min_batch_size": 16, "min_examples_per_round": 16}
    rows = {(r["batch"], r["local_steps"], r["protection"]): r for r in result["inversion"]}
    assert set(rows) == {(1, 1, "none"), (16, 1, "none"), (1, 1, "secure_sum4"), (16, 1, "secure_sum4")}
    assert rows[(1, 1, "none")]["exact_rows"] == 1.0 and rows[(1, 1, "none")]["recovered_fraction"] == 1.0
    assert rows[(16, 1, "none")]["exact_rows"] == 0.0 and rows[(1, 1, "secure_sum4")]["exact_rows"] == 0.0
    members = {(r["protection"], r["attack"]): r for r in result["membership"]}
    assert set(members) == {("none", "loss_threshold"), ("secure_sum4", "loss_threshold")}
    assert 0.35 < members[("none", "loss_threshold")]["auc"] < 0.7  # 25 rounds of logistic regression
    assert members[("secure_sum4", "loss_threshold")]["auc"] == members[("none", "loss_threshold")]["auc"]
    assert members[("secure_sum4", "loss_threshold")]["same_model_as"] == "none"
    printed = capsys.readouterr().out
    assert (
        "none, batch 1 (below the default site floor): recovered 1.00 of features, exact rows 1.00" in printed
    )
    assert "none, batch 16 (the default site floor): recovered" in printed and f"wrote {out}" in printed
