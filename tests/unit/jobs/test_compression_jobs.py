"""Every job's filters compose by the kit's rules; heart_topk is wired end to end for updates; a topk
job's compressor encodes, round by round, the share its topk algorithm sends (cxr_topk's schedule)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth.client.base import build_algorithm
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


TOPK_JOBS = [p for p in CLIENT_CONFIGS if '"name": "topk"' in p.read_text()]


@pytest.mark.parametrize("path", TOPK_JOBS, ids=lambda p: p.parts[-4])
def test_compressor_encodes_the_topk_algorithms_share_every_round(path: Path) -> None:
    client = _load(path)
    server = _load(path.parent / "config_fed_server.json")
    (topk,) = [a for a in client["executors"][0]["executor"]["args"]["algorithms"] if a["name"] == "topk"]
    (chain,) = client["task_result_filters"]
    filter_config = UpdateCompressor(**chain["filters"][-1]["args"]).config
    algorithm = build_algorithm("topk", topk["args"]).config
    (workflow,) = [w for w in server["workflows"] if w["id"] == "scatter_and_gather"]
    rounds = range(workflow["args"]["num_rounds"])
    assert [filter_config.round_k_fraction(r) for r in rounds] == [
        algorithm.round_k_fraction(r) for r in rounds
    ]


def test_cxr_topk_decays_from_10_to_1_percent_over_its_first_20_of_40_rounds() -> None:
    client = _load(JOBS_DIR / "cxr_topk" / "app" / "config" / "config_fed_client.json")
    (topk,) = client["executors"][0]["executor"]["args"]["algorithms"]
    config = build_algorithm("topk", topk["args"]).config
    shares = [config.round_k_fraction(r) for r in range(40)]
    assert shares[0] == 0.1 and shares[10] == pytest.approx(0.1 * 10**-0.5) and shares[20:] == [0.01] * 20
    assert config.describe() == "topk 0.1 to 0.01 +EF (0.1 decaying over 20 rounds)"
