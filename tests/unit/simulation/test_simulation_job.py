"""The N-site job differs from the shipped one only in what N sites change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth_tools.poc.fast_settings import fast_settings_missing
from fedhealth_tools.simulation.run import ALIGNMENT, CROSS_SITE_EVAL, PRE_TRAINING, simulation_job

JOBS_DIR = Path(__file__).resolve().parents[3] / "jobs"
CASES = [  # job, sites, rounds, hidden, local_steps
    ("heart_fedavg", 100, 3, None, None),
    ("heart_fedprox", 16, 2, 625, 2),
    ("heart_topk", 4, 1, None, 1),
]


def _load(job: Path, name: str) -> dict:
    return json.loads((job / "app" / "config" / name).read_text())


@pytest.mark.parametrize(("job", "sites", "rounds", "hidden", "steps"), CASES)
def test_simulation_job(
    tmp_path: Path, job: str, sites: int, rounds: int, hidden: int | None, steps: int | None
) -> None:
    src = JOBS_DIR / job
    out = simulation_job(src, tmp_path / job, n_sites=sites, rounds=rounds, hidden=hidden, local_steps=steps)
    server, shipped = _load(out, "config_fed_server.json"), _load(src, "config_fed_server.json")
    paths = [w["path"] for w in server["workflows"]]
    assert CROSS_SITE_EVAL in [w["path"] for w in shipped["workflows"]] and CROSS_SITE_EVAL not in paths
    assert ALIGNMENT in paths  # the heart jobs align their features before training
    for workflow in server["workflows"]:
        assert workflow["args"]["min_clients"] == sites
        if workflow["path"] not in PRE_TRAINING:
            assert workflow["args"]["num_rounds"] == rounds
            assert workflow["args"]["train_timeout"] == 0  # every site, however long a round takes
    assert json.loads((out / "meta.json").read_text())["min_clients"] == sites
    (persistor,) = [c for c in server["components"] if c["id"] == "persistor"]
    model = persistor["args"]["model_args"]  # TabularModelPersistor: the width comes from the schema
    shipped_model = next(c for c in shipped["components"] if c["id"] == "persistor")["args"]["model_args"]
    if hidden is None:
        assert model == shipped_model
    else:
        assert model == {**shipped_model, "arch": "mlp", "hidden": hidden}
    client = _load(out, "config_fed_client.json")
    executor_args = client["executors"][0]["executor"]["args"]
    shipped_args = _load(src, "config_fed_client.json")["executors"][0]["executor"]["args"]
    assert executor_args["local_steps"] == (shipped_args["local_steps"] if steps is None else steps)
    # Everything else is the shipped job: the same components and the same fast round settings.
    assert [c["path"] for c in server["components"]] == [c["path"] for c in shipped["components"]]
    assert client["task_result_filters"] == _load(src, "config_fed_client.json")["task_result_filters"]
    assert fast_settings_missing(out) == []
