"""Heart FedProx as Flower apps in Flower's simulation engine agrees with the kit's own run.

Two rounds of ``jobs/heart_fedprox`` on the four hospitals' folders: once as the Flower 1.42 apps
(:mod:`fedhealth.flower.heart`, run by :mod:`fedhealth_tools.peers.flower_sim` in ``.venv-flower``,
as a subprocess), once with the kit's in-process FLARE simulator on folders written the same way
(:mod:`fedhealth_tools.peers.kit_sim`). Same data, same alignment, same seeded model, same shuffling
and learning rates, same aggregation: "agree" means the final global model scores the same at every
site (to 1e-9: both run the same float32 arithmetic in the same order; a difference would be a bug).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fedhealth.constants import HEART_SITES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FLOWER_PYTHON = ROOT / ".venv-flower" / "bin" / "python"
ROUNDS = 2


@pytest.mark.skipif(
    not FLOWER_PYTHON.exists(), reason=".venv-flower is missing (make .venv-flower/.installed)"
)
def test_flower_simulation_of_heart_fedprox_agrees_with_the_kit(tmp_path: Path) -> None:
    out = tmp_path / "flower.json"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'custom'}{os.pathsep}{ROOT / 'tools'}",
        "OMP_NUM_THREADS": "1",
    }
    command = [str(FLOWER_PYTHON), "-m", "fedhealth_tools.peers.flower_sim", "--task", "heart"]
    command += ["--rounds", str(ROUNDS), "--work", str(tmp_path / "flower"), "--out", str(out)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    flower = json.loads(out.read_text())

    from fedhealth_tools.peers.kit_sim import run as kit_run

    kit = kit_run("heart", rounds=ROUNDS, work=tmp_path / "kit")

    results = flower["results"]
    assert (flower["engine"], flower["rounds"], results["num_rounds"]) == ("simulation", ROUNDS, ROUNDS)
    assert [s["step"] for s in results["steps"]] == ["query.ehr_profile", "query.set_schema", "evaluate"]
    for row in results["rounds"]:
        assert sorted(row["sites"]) == sorted(HEART_SITES) and row["rejected"] == {}
        assert all(m["task_s"] > 0 for m in row["sites"].values())
        assert row["bytes_down_per_site"] > 0 and all(b > 0 for b in row["bytes_up"].values())
    assert flower["round_s"] > 0 and flower["peak_mem_mb"] > 200
    assert sorted(results["final"]) == sorted(kit["final"]) == sorted(HEART_SITES)
    for site, theirs in kit["final"].items():
        ours = results["final"][site]
        assert ours["n_test"] == theirs["n_test"] > 0
        for key in ("accuracy", "auc"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-9), (site, key)
    assert flower["client_avg_auc"] == pytest.approx(kit["client_avg_auc"], abs=1e-9)
    assert 0.6 < kit["client_avg_auc"] < 1.0 and 0.5 < kit["client_avg_accuracy"] < 1.0
