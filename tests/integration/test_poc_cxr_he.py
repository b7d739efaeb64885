"""cxr_he in real FLARE processes: the chest X-ray CNN's updates travel as CKKS ciphertexts.

Four sites read their own converted DICOM folders, train the small CNN (105k weights, 4-D conv
tensors flattened by FLARE's HE filters and restored at the site), encrypt every layer; the server
adds ciphertexts it cannot read and evaluates only the global model at each site.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedhealth.reports.run_report import build_report, find_run_files
from fedhealth_tools.imaging.converter import medmnist_file
from fedhealth_tools.poc.cxr_data import write_cxr_data
from fedhealth_tools.poc.demo import run_job
from fedhealth_tools.poc.variants import heart_poc, job_variant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 2
LIMIT = 400  # images per split over all four sites
LOCAL = {"local_epochs": 4, "batch_size": 16}


def test_cxr_he_job_completes_with_every_update_encrypted(tmp_path: Path) -> None:
    npz = medmnist_file("pneumoniamnist")  # bundled with fedhealth-tools
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace, he=True)
    write_cxr_data(layout, npz, alpha=1.0, seed=0, limit=LIMIT)
    job = job_variant(
        ROOT / "jobs" / "cxr_he", tmp_path / "jobs" / "cxr_he", rounds=ROUNDS, executor_args=LOCAL
    )
    result = run_job(layout, job, workspace=workspace, timeout=500)
    record, cross = find_run_files(result)
    report = build_report("cxr_he", record, cross)
    assert report["failures"] == [] and report["rounds"] == ROUNDS
    assert all(list(models) == ["SRV_FL_global_model.pt"] for models in report["cross_site"].values())
    assert report["global"]["auc"] > 0.7  # two short rounds on ~400 images
    enc = report["encryption"]
    assert enc["clear_layers"] == [] and enc["values_encrypted"] == 105_281
    assert set(enc["sites"]) == set(layout.sites)
    assert all(row["rounds"] == ROUNDS for row in enc["sites"].values())
