"""The privacy audit's job reading and capture: what a site would send, under each protection."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from fedhealth.privacy.dp_sgd import noise_multiplier
from fedhealth_tools.privacy.attacks.tabular_inversion import recovery
from fedhealth_tools.privacy.audit.capture import (
    capture,
    load_audit_data,
    parse_protection,
    protected_algorithms,
    realistic_sigma,
)
from fedhealth_tools.privacy.audit.job import AuditJob
from fedhealth_tools.privacy.audit.run import job_plan, normalized, settings_of

ROOT = Path(__file__).resolve().parents[4]
JOBS = ROOT / "jobs"


@pytest.mark.parametrize(
    ("job", "data", "protection", "batch", "optimizer"),
    [
        ("heart_fedavg", "heart", "none", 16, "sgd"),
        ("heart_dp", "heart", "dp_eps5", 16, "sgd"),
        ("heart_he", "heart", "secure_sum", 16, "sgd"),
        ("heart_topk", "heart", "topk10", 16, "sgd"),
        ("heart_he_dp", "heart", "dp_eps5+secure_sum", 16, "sgd"),
        ("cxr_fedavg", "cxr", "none", 64, "adam"),
        ("cxr_dp", "cxr", "dp_eps5", None, "adam"),
        ("cxr_topk", "cxr", "topk10", 64, "adam"),  # 10% decaying to 1%: read at its largest share
    ],
)
def test_the_shipped_jobs_are_read_as_their_sites_run_them(job, data, protection, batch, optimizer) -> None:
    read = AuditJob.load(JOBS / job)
    assert (read.data, read.protection, read.local["optimizer"]) == (data, protection, optimizer)
    assert batch is None or read.local["batch_size"] == batch
    assert read.rounds >= 1 and read.lr > 0


def test_a_job_without_the_site_executor_is_refused(tmp_path: Path) -> None:
    job = tmp_path / "other"
    shutil.copytree(JOBS / "heart_fedavg", job)
    client = job / "app" / "config" / "config_fed_client.json"
    config = json.loads(client.read_text())
    config["executors"][0]["executor"]["path"] = "some.Other"
    client.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="exactly one fedhealth.executors.site_executor.SiteExecutor"):
        AuditJob.load(job)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("none", {}),
        ("dp_eps8", {"dp": 8.0}),
        ("secure_sum4+dp_eps1", {"secure_sum": 4.0, "dp": 1.0}),
        ("topk1", {"topk": 1.0}),
    ],
)
def test_protections_parse(text: str, parts: dict) -> None:
    assert parse_protection(text) == parts


@pytest.mark.parametrize("text", ["dp8", "topk0", "dp_eps1+dp_eps2", "secure_sum", "vpn"])
def test_unknown_protections_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="protection"):
        parse_protection(text)


def test_the_plan_covers_batch_1_the_floor_and_the_job_with_its_own_protection() -> None:
    job = AuditJob.load(JOBS / "heart_he")
    plan = job_plan(job)
    assert plan.batches == (1, 16) and normalized(job.protection) == "secure_sum4"
    assert plan.protections == ("none", "secure_sum4") and plan.membership == ("none", "secure_sum4")
    assert len(settings_of(plan)) == 2 * 2 * 2  # 2 batches x 2 step counts x 2 protections
    cxr = job_plan(AuditJob.load(JOBS / "cxr_fedavg"))
    assert cxr.batches == (1, 16, 64) and cxr.protections == ("none",)


def test_protections_replace_the_jobs_own() -> None:
    job = AuditJob.load(JOBS / "heart_dp")
    assert protected_algorithms(job, "none") == []
    (dp,) = protected_algorithms(job, "dp_eps8")
    assert dp == {
        "name": "dp_sgd",
        "args": {"target_epsilon": 8.0, "max_grad_norm": 1.0, "allow_small_batch": True},
    }
    (topk,) = protected_algorithms(job, "topk1")
    assert topk["args"]["k_fraction"] == pytest.approx(0.01)


@pytest.fixture(scope="module")
def heart():
    job = AuditJob.load(JOBS / "heart_fedavg")
    return job, load_audit_data(job)


def test_batch_1_sends_the_patient_exactly(heart) -> None:
    job, data = heart
    cap = capture(job, data, batch=1, local_steps=1, protection="none", seed=3)
    assert cap.x.shape == (1, data.sites[0].arrays("train")[0].shape[1]) and cap.mask is None
    rows = data.sites[0].arrays("train")[0]
    found = recovery(cap.received, cap.sent, rows)
    assert found["exact"] and found["fraction"] == 1.0
    np.testing.assert_allclose(rows[found["row"]], cap.x[0], atol=1e-6)  # the attacked patient


def test_the_default_floor_batch_mixes_patients(heart) -> None:
    job, data = heart
    exact = [
        recovery(c.received, c.sent, data.sites[0].arrays("train")[0])["exact"]
        for c in (capture(job, data, batch=16, local_steps=1, protection="none", seed=s) for s in range(5))
    ]
    assert not any(exact)


def test_secure_sum_attacks_the_mean_of_four_sites(heart) -> None:
    job, data = heart
    cap = capture(job, data, batch=1, local_steps=1, protection="secure_sum4", seed=0)
    assert cap.x.shape[0] == 4
    rows = np.concatenate([s.arrays("train")[0] for s in data.sites])
    assert not recovery(cap.received, cap.sent, rows)["exact"]
    alone = [capture(job, data, batch=1, local_steps=1, protection="none", seed=0)]
    assert recovery(alone[0].received, alone[0].sent, data.sites[0].arrays("train")[0])["exact"]


def test_topk_sends_about_one_percent_and_the_mask_says_which(heart) -> None:
    job, data = heart
    cap = capture(job, data, batch=1, local_steps=1, protection="topk1", seed=0)
    sent = sum(int(m.sum()) for m in cap.mask.values())
    total = sum(m.size for m in cap.mask.values())
    assert 1 <= sent <= math.ceil(0.01 * total) + len(cap.mask)  # at least one entry per tensor
    for name, m in cap.mask.items():
        assert np.all(cap.sent[name][~m] == cap.received[name][~m])


def test_dp_noise_is_what_a_site_of_its_real_size_adds(heart) -> None:
    job, data = heart
    n = data.sites[0].n_train
    sigma = realistic_sigma(job, epsilon=8.0, n_site=n, batch=1)
    assert sigma == pytest.approx(noise_multiplier(8.0, 0.1 / n, 1.0 / n, job.rounds * n, "rdp"))
    cap = capture(job, data, batch=1, local_steps=1, protection="dp_eps8", seed=0)
    assert cap.noise_multiplier == pytest.approx(sigma)
    assert not recovery(cap.received, cap.sent, data.sites[0].arrays("train")[0])["exact"]


def test_reidentification_picks_the_patient_out_of_the_pool() -> None:
    from fedhealth_tools.privacy.audit.inversion import reidentified

    rng = np.random.default_rng(0)
    pool = rng.normal(size=(50, 1, 8, 8))
    originals = pool[[3, 17]]
    assert reidentified(originals, originals * 2.0 + 1.0, pool) == 1.0  # scale and shift do not matter
    noisy = originals + rng.normal(scale=0.3, size=originals.shape)
    assert reidentified(originals, noisy, pool) == 1.0
    assert reidentified(originals, pool[[5, 9]], pool) == 0.0  # someone else's image
    assert reidentified(originals, np.repeat(pool.mean(axis=0)[None], 2, axis=0), pool) <= 0.5
