"""The ``ΔW / Δb`` inversion of a heart site's logistic-regression update, scored by :func:`recovery`:
exact at one patient and one step, and weakened by what the kit can put in its way (bigger batches,
more steps, DP noise, secure aggregation's sum, top-k sparsification). The updates come from the
site's own training code (:meth:`HeartSite.train_round`) and the kit's own compression codec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedhealth.compression.codec import decode_update, encode_update
from fedhealth.compression.config import CompressionConfig
from fedhealth.models.state import to_numpy
from fedhealth.models.tabular import TabularNet
from fedhealth.training.heart_site import HeartSite
from fedhealth.training.loops import LocalTrainConfig
from fedhealth_tools.privacy.attacks.tabular_inversion import (
    BIAS,
    RECOVERY_TOLERANCE,
    WEIGHT,
    invert,
    recovery,
)
from fedhealth_tools.training.federation import federated_scaling

LR = 0.05
# (batch size, local steps, exact match, fraction of the nearest row's features recovered: bounds)
CASES = [
    (1, 1, True, (1.0, 1.0)),  # one patient, one step: the whole record
    (16, 1, False, (0.0, 0.4)),  # a mixture of 16 records (0.21 here)
    (4, 1, False, (0.0, 0.6)),  # (0.43)
    (1, 5, False, (0.0, 0.6)),  # five patients, one after the other (0.43)
]


@pytest.fixture(scope="module")
def sites(heart_tables) -> list[HeartSite]:
    sites = [HeartSite(name, train, test) for name, (train, test) in heart_tables.items()]
    federated_scaling(sites)
    return sites


def _round(site: HeartSite, batch: int, steps: int = 1, seed: int = 0) -> tuple[dict, dict]:
    """(received, sent) of one round of the site's own training from the same initial model."""
    model = TabularNet(in_features=site.n_features, seed=0)
    received = to_numpy(model)
    config = LocalTrainConfig(lr=LR, batch_size=batch, local_steps=steps)
    site.train_round(model, config, generator=torch.Generator().manual_seed(seed))
    return received, to_numpy(model)


@pytest.mark.parametrize(("batch", "steps", "exact", "bounds"), CASES)
def test_recovery_by_batch_and_steps(sites, batch: int, steps: int, exact: bool, bounds) -> None:
    received, sent = _round(sites[0], batch, steps)
    result = recovery(received, sent, sites[0].arrays("train")[0])
    assert result["invertible"] and result["exact"] is exact, result
    assert bounds[0] <= result["fraction"] <= bounds[1], result
    assert result["observed"] == 1.0 and result["tolerance"] == RECOVERY_TOLERANCE
    if exact:
        assert result["distance"] < 1e-5 and result["second"] > 1.0  # that patient, and no other near
    else:
        assert result["distance"] > 2.0, result  # about the spacing of neighbouring patients


def test_dp_noise_degrades_the_recovery(sites) -> None:
    rows = sites[0].arrays("train")[0]
    received, sent = _round(sites[0], 1)
    rng = np.random.default_rng(0)
    results = []
    for sd in (0.0, 1e-4, 1e-3, 5e-3):  # Gaussian noise on every coordinate; |Δb| is about 0.025 here
        noisy = {k: v + rng.normal(0.0, sd, np.shape(v)) for k, v in sent.items()}
        results.append(recovery(received, noisy, rows))
    distances = [r["distance"] for r in results]
    fractions = [r["fraction"] for r in results]
    assert results[0]["exact"] and not any(r["exact"] for r in results[1:]), distances
    assert distances == sorted(distances) and distances[-1] > 0.5, distances
    assert fractions[0] == 1.0 and fractions == sorted(fractions, reverse=True), fractions
    assert fractions[-1] < 0.3, fractions


def test_the_sum_of_four_sites_updates_matches_no_row(sites) -> None:
    """Secure aggregation: the server sees only the sum of the 4 sites' one-patient updates."""
    received = to_numpy(TabularNet(in_features=sites[0].n_features, seed=0))
    total = {k: np.zeros(np.shape(v)) for k, v in received.items()}
    for i, site in enumerate(sites):
        r, sent = _round(site, 1, seed=i)
        alone = recovery(r, sent, site.arrays("train")[0])
        assert alone["exact"], (site.name, alone)  # each alone would give its patient away
        for k in total:
            total[k] += sent[k] - r[k]
    rows = np.concatenate([s.arrays("train")[0] for s in sites])
    result = recovery(received, {k: received[k] + total[k] for k in received}, rows)
    assert not result["exact"] and result["distance"] > 1.0 and result["fraction"] < 0.5, result


def test_top_k_sparsification_leaves_almost_nothing(sites) -> None:
    received, sent = _round(sites[0], 1)
    delta = {k: sent[k] - received[k] for k in sent}
    payload, _ = encode_update(delta, CompressionConfig(mode="topk", k_fraction=0.01, error_feedback=False))
    decoded = decode_update(payload)
    result = recovery(received, {k: received[k] + decoded[k] for k in received}, sites[0].arrays("train")[0])
    assert result["observed"] == pytest.approx(1 / 14)  # one weight of 14 (and the bias) sent
    assert not result["exact"] and result["fraction"] < 0.3, result


def test_an_unmoved_bias_is_not_invertible(sites) -> None:
    received, sent = _round(sites[0], 1)
    result = recovery(received, {**sent, BIAS: received[BIAS]}, sites[0].arrays("train")[0])
    assert not result["invertible"] and result["fraction"] == 0.0 and result["row"] is None
    with pytest.raises(ValueError, match="the bias did not change"):
        invert(received, {**sent, BIAS: received[BIAS]})


def _weights(keys_shapes: dict) -> dict:
    return {k: np.zeros(shape, np.float32) for k, shape in keys_shapes.items()}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"conv.weight": (16, 14), "conv.bias": (16,)}, r"logistic model .* or the MLP's first layer"),
        ({WEIGHT: (3, 14), BIAS: (3,)}, r"one logit .* got received \(3, 14\)"),
    ],
)
def test_other_models_are_refused(model: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recovery(_weights(model), _weights(model), np.zeros((2, 14)))


@pytest.mark.parametrize(
    ("rows", "tolerance", "sent_bias", "message"),
    [
        (np.zeros((2, 13)), 0.05, 1.0, r"rows must be \(n >= 1, 14\)"),
        (np.zeros((0, 14)), 0.05, 1.0, r"rows must be \(n >= 1, 14\)"),
        (np.zeros((2, 14)), 0.0, 1.0, "tolerance must be positive"),
        (np.zeros((2, 14)), 0.05, np.nan, "NaN or infinite"),
    ],
)
def test_bad_arguments_are_refused(rows, tolerance: float, sent_bias: float, message: str) -> None:
    received = _weights({WEIGHT: (1, 14), BIAS: (1,)})
    sent = {WEIGHT: received[WEIGHT], BIAS: np.array([sent_bias], np.float32)}
    with pytest.raises(ValueError, match=message):
        recovery(received, sent, rows, tolerance=tolerance)


def test_the_mlp_leaks_its_input_through_the_first_layer() -> None:
    """One SGD step of TabularNet(arch="mlp") on one row: x = ΔW₁[j] / Δb₁[j] exactly."""
    import torch

    from fedhealth.models.tabular import TabularNet

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(20, 14)).astype(np.float32)
    model = TabularNet(in_features=14, arch="mlp", hidden=16, seed=0)
    received = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(torch.as_tensor(rows[7:8])).view(-1), torch.ones(1)
    )
    loss.backward()
    opt.step()
    sent = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    result = recovery(received, sent, rows)
    assert result["invertible"] and result["row"] == 7 and result["exact"] and result["fraction"] == 1.0
