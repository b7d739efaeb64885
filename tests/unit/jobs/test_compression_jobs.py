"""Every job's filters compose by the kit's rules; heart_topk is wired end to end for updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.compression.compose import COMPRESSOR, DECOMPRESSOR, check_client_filters
from fedhealth.filters.update_compressor import UpdateCompressor

JOBS_DIR = Path(__file__).resolve().parents[3] / "jobs"
CLIENT_CONFIGS = sorted(JOBS_DIR.glob("*/app*/config/config_fed_client.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", CLIENT_CONFIGS, ids=lambda p: f"{p.parts[-4]}/{p.parts[-3]}")
def test_client_filters_compose(path: Path) -> None:
    check_client_filters(_load(path))


def test_heart_topk_sends_updates_and_the_server_decodes_them_first() -> None:
    client = _load(JOBS_DIR / "heart_topk" / "app" / "config" / "config_fed_client.json")
    server = _load(JOBS_DIR / "heart_topk" / "app" / "config" / "config_fed_server.json")
    (topk,) = client["executors"][0]["executor"]["args"]["algorithms"]
    assert (
        topk["name"] == "topk" and topk["args"]["error_feedback"] is True
    )  # sends WEIGHT_DIFF, keeps a residual
    (result_chain,) = client["task_result_filters"]
    assert result_chain["tasks"] == ["train"] and result_chain["filters"][-1]["path"] == COMPRESSOR
    compressor = UpdateCompressor(**result_chain["filters"][-1]["args"])
    # The filter only encodes: the algorithm already chose the top k and kept the error.
    assert (compressor.config.mode, compressor.config.error_feedback) == ("topk", False)
    assert compressor.config.k_fraction == topk["args"]["k_fraction"]
    (server_in,) = server["task_result_filters"]
    assert server_in["filters"][0]["path"] == DECOMPRESSOR
    (aggregator,) = [c for c in server["components"] if c["id"] == "aggregator"]
    assert aggregator["args"]["expected_data_kind"] == "WEIGHT_DIFF"
    # The global model goes out quantized and each site decodes it before training.
    (server_out,) = server["task_data_filters"]
    assert server_out["filters"][0]["path"] == COMPRESSOR
    assert UpdateCompressor(**server_out["filters"][0]["args"]).config.mode == "int8"
    (client_in,) = client["task_data_filters"]
    assert client_in["filters"][0]["path"] == DECOMPRESSOR
