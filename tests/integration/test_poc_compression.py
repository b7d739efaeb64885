"""heart_topk in real FLARE processes: top-k updates with error feedback, int8 global model.

Checks what a reviewer cannot see from unit tests: the filters run inside real site and server
processes, the aggregator receives decoded WEIGHT_DIFFs, every site keeps its error-feedback
residual in its own run folder, and the report totals the bytes each side measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedhealth import constants as C
from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.poc.demo import run_job
from fedhealth_tools.poc.variants import heart_poc, job_variant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3


def test_topk_job_completes_and_accounts_bytes(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace)
    job = job_variant(ROOT / "jobs" / "heart_topk", tmp_path / "jobs" / "heart_topk", rounds=ROUNDS)
    result = run_job(layout, job, workspace=workspace, timeout=300)
    record, cross = find_run_files(result)
    report = build_report("heart_topk", record, cross)
    assert report["failures"] == [] and report["rejected_updates"] == []
    comm = report["communication"]
    assert comm["modes"] == ["topk 0.1 +EF"]
    assert set(comm["sites"]) == set(layout.sites)
    for site, row in comm["sites"].items():
        assert row["rounds"] == ROUNDS, site
        assert row[C.M_BYTES_SENT] < row[C.M_BYTES_RAW] / 2, site  # 10% of 257 values, gap-coded
        assert row[C.M_BYTES_RECEIVED] >= row[C.M_BYTES_SENT], site  # FLARE adds its routing headers
    # The model learned: every site's final loss is below that of the initial model.
    for site in report["sites"]:
        assert site["loss"] < site["initial"]["loss"], site["name"]
    # Each site's topk algorithm kept its residual in the site's own run folder, updated every round.
    job_id = report["job_id"]
    for site in layout.sites:
        path = layout.kit(site) / job_id / C.TOPK_RESIDUAL_FILE
        with np.load(path) as saved:
            assert int(saved["__rounds__"]) == ROUNDS, site
            assert any(np.any(saved[k] != 0) for k in saved.files if k.startswith("r/")), site
