"""heart_he in real FLARE processes: TenSEAL contexts from provisioning, encrypted aggregation.

Checks what unit tests cannot: the kits' signed contexts load in the site and server processes,
the server aggregates and saves ciphertexts only, every site decrypts and validates the global
model (no site model is submitted), the report states the encryption, and a site without its
context stops the job at start with the file named.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fedhealth import constants as C
from fedhealth.reports.run_report import build_report, find_run_files, write_report
from fedhealth_tools.poc.demo import run_job
from fedhealth_tools.poc.variants import heart_poc, job_variant
from fedhealth_tools.poc.workspace import PocError

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3


def test_he_job_completes_and_reports_encryption(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace, he=True)
    job = job_variant(ROOT / "jobs" / "heart_he", tmp_path / "jobs" / "heart_he", rounds=ROUNDS)
    result = run_job(layout, job, workspace=workspace, timeout=400)
    record, cross = find_run_files(result)
    report = build_report("heart_he", record, cross)
    assert report["failures"] == [] and report["status"] == "finished"
    assert report["rounds"] == ROUNDS
    # Only the global model was evaluated, at every site: no local model left a site.
    assert set(report["cross_site"]) == set(layout.sites)
    assert all(list(models) == ["SRV_FL_global_model.pt"] for models in report["cross_site"].values())
    for site in report["sites"]:
        assert site["loss"] < site["initial"]["loss"], site["name"]
    assert report["global"]["accuracy"] > 0.7
    enc = report["encryption"]
    assert (enc["scheme"], enc["poly_modulus_degree"], enc["scale_bits"]) == ("CKKS", 8192, 40)
    assert enc["encrypted_layers"] == ["net.bias", "net.weight"] and enc["clear_layers"] == []
    # Logistic regression over the aligned schema's columns: one weight a column and the bias.
    columns = json.loads(next(result.rglob(C.EHR_SCHEMA_FILE)).read_text())["columns"]
    assert enc["values_encrypted"] == len(columns) + 1 and enc["values_clear"] == 0
    assert set(enc["sites"]) == set(layout.sites)
    for site, row in enc["sites"].items():
        assert row["rounds"] == ROUNDS, site
        assert row["ratio"] > 100, site  # two ciphertexts vs a few dozen floats
    # The server's checkpoint holds ciphertexts, not weights.
    (checkpoint,) = result.rglob("FL_global_model.pt")
    saved = torch.load(checkpoint, weights_only=True)["model"]
    assert set(saved) == {"net.weight", "net.bias"}
    assert all(isinstance(v, bytes) and len(v) > 100_000 for v in saved.values())
    # The per-site report is written, with its encryption section.
    paths = write_report(report, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Encryption" in text and "CKKS, polynomial modulus degree 8192" in text
    assert len(paths) >= 2


# (participant whose context is removed, its file, the start of the reason the job ends with)
MISSING = [
    ("hungary", C.HE_SITE_CONTEXT_FILE, "site hungary: TenSEAL context "),
    ("server", C.HE_SERVER_CONTEXT_FILE, "TenSEAL context "),
]


@pytest.mark.parametrize(("who", "name", "prefix"), MISSING)
def test_a_missing_context_stops_the_job_at_start(tmp_path: Path, who: str, name: str, prefix: str) -> None:
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace, he=True)
    (layout.kit(who) / "startup" / name).unlink()
    job = job_variant(ROOT / "jobs" / "heart_he", tmp_path / "jobs" / "heart_he", rounds=ROUNDS)
    expected = prefix + r"\S+/" + who + "/startup/" + name.replace(".", r"\.") + " is missing"
    with pytest.raises(PocError, match=expected) as err:
        run_job(layout, job, workspace=workspace, timeout=300)
    assert "HEBuilder" in str(err.value)
    record, _ = find_run_files(next((workspace / "downloads").iterdir()))
    assert record["status"] == "aborted" and record["rounds"] == []  # not one round ran


def test_he_with_dp_sgd(tmp_path: Path) -> None:
    """jobs/heart_he_dp: DP-SGD noise at every site, then CKKS encryption of the noisy update."""
    workspace = tmp_path / "ws"
    layout = heart_poc(ROOT / "provision" / "poc.yml", workspace, he=True)
    job = job_variant(ROOT / "jobs" / "heart_he_dp", tmp_path / "jobs" / "heart_he_dp", rounds=2)
    result = run_job(layout, job, workspace=workspace, timeout=400)
    record, cross = find_run_files(result)
    report = build_report("heart_he_dp", record, cross)
    assert report["failures"] == [] and report["rounds"] == 2
    enc = report["encryption"]
    assert enc["scheme"] == "CKKS" and set(enc["sites"]) == set(layout.sites)
    assert all(row["rounds"] == 2 and row["ratio"] > 100 for row in enc["sites"].values())
    privacy = report["privacy"]
    assert set(privacy["final"]) == set(layout.sites), privacy
    for site, final in privacy["final"].items():
        assert 0 < final["epsilon"] <= 5.0 + 1e-6, site
