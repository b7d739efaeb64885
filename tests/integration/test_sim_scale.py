"""Sixteen simulated sites, two rounds, the shipped heart job: the features are aligned over all
sixteen, and the global model is the FedAvg of the sites' own updates.

Runs FLARE's simulator with every client in one process (:mod:`fedhealth_tools.simulation`). A test-only
server widget captures each site's train result as the server received it and each round's global
model; the test recomputes the sample-weighted average directly from those updates.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from nvflare.apis.dxo import MetaKey, from_shareable
from nvflare.apis.event_type import EventType
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_constant import FLContextKey, ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import ReservedHeaderKey
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType

from fedhealth.constants import EHR_SCHEMA_FILE, TASK_TRAIN
from fedhealth_tools.data.synthetic_sites import site_names
from fedhealth_tools.simulation.run import run_simulation

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SITES, ROUNDS = 16, 2


class UpdateCapture(FLComponent):
    """Test-only: pickles each site's train result and each round's global model into ``folder``."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = Path(folder)

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        current = fl_ctx.get_prop(AppConstants.CURRENT_ROUND)
        if event_type == EventType.BEFORE_PROCESS_SUBMISSION:
            result = fl_ctx.get_prop(FLContextKey.TASK_RESULT)
            if result is None or result.get_header(ReservedHeaderKey.TASK_NAME, "") != TASK_TRAIN:
                return
            site = result.get_peer_prop(ReservedKey.IDENTITY_NAME, None)
            dxo = from_shareable(result)
            entry = {"weights": dxo.data, "n": dxo.get_meta_prop(MetaKey.NUM_STEPS_CURRENT_ROUND)}
            (self.folder / f"update_{current}_{site}.pkl").write_bytes(pickle.dumps(entry))
        elif event_type == AppEventType.ROUND_DONE:
            model = fl_ctx.get_prop(AppConstants.GLOBAL_MODEL)
            (self.folder / f"global_{current}.pkl").write_bytes(pickle.dumps(dict(model["weights"])))


def test_sixteen_sites_two_rounds_aggregate_is_the_weighted_average(tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    widget = f"{UpdateCapture.__module__}.{UpdateCapture.__name__}"
    result = run_simulation(
        ROOT / "jobs" / "heart_fedavg",
        tmp_path / "sim",
        n_sites=SITES,
        rounds=ROUNDS,
        extra_allow=[widget],
        server_components=[{"id": "update_capture", "path": widget, "args": {"folder": str(capture)}}],
    )
    assert result["status"] == "finished"
    assert [r["sites"] for r in result["per_round"]] == [SITES] * ROUNDS
    assert all(r["overhead_s"] is not None and r["overhead_s"] >= 0 for r in result["per_round"])
    assert 0 < result["peak_mem_gb"] < 8
    # Every site's mapping read its table: the server aligned the features over all sixteen.
    schema = json.loads((tmp_path / "sim" / "sim" / "server" / "simulate_job" / EHR_SCHEMA_FILE).read_text())
    assert sorted(schema["sites"]) == site_names(SITES)
    assert sorted(d["name"] for d in schema["dropped"]) == ["ca", "slope", "thal"]  # not in the 10 columns
    for rnd in range(ROUNDS):
        updates = [pickle.loads(p.read_bytes()) for p in sorted(capture.glob(f"update_{rnd}_*.pkl"))]
        assert len(updates) == SITES
        weights = np.array([u["n"] for u in updates], dtype=float)
        assert weights.min() >= 8  # each site's sample count, as it reported it
        global_model = pickle.loads((capture / f"global_{rnd}.pkl").read_bytes())
        assert set(global_model) == set(updates[0]["weights"])
        assert np.asarray(global_model["net.weight"]).shape[-1] == len(
            schema["columns"]
        )  # the schema's width
        for name, value in global_model.items():
            stacked = np.stack([np.asarray(u["weights"][name], dtype=np.float64) for u in updates])
            expected = np.tensordot(weights / weights.sum(), stacked, axes=1)
            np.testing.assert_allclose(np.asarray(value, dtype=np.float64), expected, rtol=1e-5, atol=1e-6)
            # The sites really differ: the average is not any one site's model.
            assert np.abs(stacked - expected).max() > 1e-4
