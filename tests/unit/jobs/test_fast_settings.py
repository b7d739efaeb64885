"""The shipped heart jobs use the fast round settings; the stock variant really is FLARE's stock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedhealth_tools.poc.fast_settings import SCATTER_AND_GATHER, fast_settings_missing, stock_variant

JOBS_DIR = Path(__file__).resolve().parents[3] / "jobs"
JOBS = sorted(p.name for p in JOBS_DIR.iterdir() if p.is_dir())  # each one a submittable job


@pytest.mark.parametrize("job", JOBS)
def test_shipped_job_uses_the_fast_settings(job: str) -> None:
    assert fast_settings_missing(JOBS_DIR / job) == []


def test_stock_variant_lacks_every_fast_setting(tmp_path: Path) -> None:
    stock = stock_variant(JOBS_DIR / "heart_fedavg", tmp_path / "heart_fedavg")
    missing = fast_settings_missing(stock)
    assert len(missing) == 4, missing
    assert any("server.task_request_interval" in m for m in missing)
    assert any("ScatterAndGather task_check_period" in m for m in missing)
    assert sum("np_download_chunk_size" in m for m in missing) == 2
    server = json.loads((stock / "app" / "config" / "config_fed_server.json").read_text())
    (sag,) = [w for w in server["workflows"] if w["path"] == SCATTER_AND_GATHER]
    assert "task_check_period" not in sag["args"] and "task_request_interval" not in server["server"]
    # The shipped job is untouched.
    assert fast_settings_missing(JOBS_DIR / "heart_fedavg") == []


def test_a_job_without_configs_is_reported(tmp_path: Path) -> None:
    assert fast_settings_missing(tmp_path) == [f"{tmp_path.name}: no app config found"]
