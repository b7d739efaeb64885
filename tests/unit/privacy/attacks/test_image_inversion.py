"""Image inversion from a site update: the simulation replays the kit's real training loop, and the attack
recovers a real chest X-ray from a one-step SGD update but nothing from noise."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import train_images
from fedhealth.models.cnn import build_image_model
from fedhealth.training.loops import LocalTrainConfig
from fedhealth_tools.privacy.attacks.image_inversion import (
    InversionConfig,
    infer_label,
    invert_image_update,
)
from fedhealth_tools.privacy.attacks.image_scores import score_reconstructions
from fedhealth_tools.privacy.attacks.local_steps import SiteTraining, simulate_update
from fedhealth_tools.privacy.utility_curve_cxr import cxr_sites

SHAPE = (1, 28, 28)
# (optimizer, lr, local steps, weight decay, share of coordinates that must agree): the simulation must
# give the kit's own update. Adam divides by |g|, so coordinates whose gradient is float32 rounding
# noise (|g| ~ 1e-8) can differ: a few per thousand may.
SIMULATION_CASES = [
    ("sgd", 0.01, 1, 0.0, 1.0),
    ("sgd", 0.01, 3, 1e-3, 1.0),
    ("adam", 1e-3, 1, 0.0, 0.995),
    ("adam", 1e-3, 3, 0.0, 0.995),
]
FAST = InversionConfig(method="ig", iterations=120, restarts=1, seed=0)
# (attack, SSIM it must reach on one X-ray after one SGD step): IG reaches ~0.8 in 120 iterations, DLG
# (no image prior) ~0.6 in 100 L-BFGS evaluations
ATTACKS = [(FAST, 0.6), (InversionConfig(method="dlg", iterations=100, step_size=1.0, restarts=1), 0.5)]


def _model() -> torch.nn.Module:
    return build_image_model("small_cnn", in_channels=1, num_classes=1)


@pytest.fixture(scope="module")
def xray() -> tuple[np.ndarray, np.ndarray]:
    """Real PneumoniaMNIST training images of one site, z-scored per image as the site does."""
    return cxr_sites(limit=50)[0].arrays("train")


def _site_update(x, y, optimizer: str, lr: float, steps: int, weight_decay: float = 0.0):
    """(received, sent) of the kit's image loop at the small CNN's random init, on one batch."""
    torch.manual_seed(0)
    model = _model()
    received = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    config = LocalTrainConfig(
        lr=lr, batch_size=len(y), local_steps=steps, optimizer=optimizer, weight_decay=weight_decay
    )
    train_images(
        model,
        x,
        y,
        config,
        LabelSpec("binary"),
        augment=False,
        device=torch.device("cpu"),
        mixed_precision=False,
    )
    return received, {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("optimizer", "lr", "steps", "weight_decay", "agree"), SIMULATION_CASES)
def test_simulated_update_is_the_kits_update(xray, optimizer, lr, steps, weight_decay, agree) -> None:
    x, y = xray[0][:4], xray[1][:4]
    received, sent = _site_update(x, y, optimizer, lr, steps, weight_decay)
    params = {k: torch.as_tensor(v) for k, v in received.items()}
    site = SiteTraining(optimizer, lr, steps, weight_decay=weight_decay)
    sim = simulate_update(_model(), params, {}, torch.as_tensor(x), torch.as_tensor(y), site)
    for name, update in sim.items():
        observed = sent[name] - received[name]
        assert np.abs(observed).max() > 0, name
        close = np.isclose(update.detach().numpy(), observed, rtol=1e-3, atol=2e-6 * steps)
        assert close.mean() >= agree, (name, close.mean())


@pytest.mark.parametrize("index", [0, 1])  # one image of each label in this site's first two
def test_idlg_reads_the_label_from_the_last_bias(xray, index: int) -> None:
    x, y = xray[0][index : index + 1], xray[1][index : index + 1]
    assert {float(v) for v in xray[1][:2]} == {0.0, 1.0}
    received, sent = _site_update(x, y, "adam", 1e-3, 2)
    assert [float(v) for v in infer_label(received, sent)[0]] == [float(y[0])]
    hidden = {k: np.zeros(v.shape, bool) for k, v in received.items()}
    assert len(infer_label(received, sent, mask=hidden)) == 2  # bias not sent: try both


@pytest.mark.parametrize(("config", "ssim"), ATTACKS, ids=["ig", "dlg"])
def test_one_sgd_step_on_one_xray_gives_the_image_away(xray, config: InversionConfig, ssim: float) -> None:
    x, y = xray[0][:1], xray[1][:1]
    received, sent = _site_update(x, y, "sgd", 0.01, 1)
    start = time.perf_counter()
    rec = invert_image_update(
        _model, received, sent, n_images=1, image_shape=SHAPE, labels=None, optimizer="sgd", lr=0.01,
        local_steps=1, config=config,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert rec.shape == (1, *SHAPE) and rec.dtype == np.float32
    assert score_reconstructions(x, rec)["ssim_mean"] >= ssim
    assert seconds < 10.0


def test_a_pure_noise_update_gives_nothing(xray) -> None:
    x, y = xray[0][:1], xray[1][:1]
    received, _ = _site_update(x, y, "sgd", 0.01, 1)
    rng = np.random.default_rng(0)
    noise = {k: v + 1e-3 * rng.standard_normal(v.shape).astype(np.float32) for k, v in received.items()}
    rec = invert_image_update(
        _model, received, noise, n_images=1, image_shape=SHAPE, labels=y, optimizer="sgd", lr=0.01,
        local_steps=1, config=FAST,
    )  # fmt: skip
    assert score_reconstructions(x, rec)["ssim_mean"] < 0.3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": None, "n_images": 2}, "labels=None .* needs n_images == 1, got 2"),
        ({"labels": np.array([0.0, 2.0]), "n_images": 2}, r"labels must be 2 values in \{0, 1\}"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"mask": "none kept"}, "The mask keeps no coordinate"),
    ],
)
def test_bad_arguments_are_named(xray, kwargs: dict, message: str) -> None:
    received = {k: v.detach().numpy() for k, v in _model().state_dict().items()}
    if kwargs.get("mask") == "none kept":
        kwargs["mask"] = {k: np.zeros(v.shape, bool) for k, v in received.items()}
    args = {"n_images": 1, "labels": np.array([1.0]), "optimizer": "sgd", "mask": None} | kwargs
    with pytest.raises(ValueError, match=message):
        invert_image_update(
            _model, received, received, image_shape=SHAPE, lr=0.01, local_steps=1, config=FAST, **args
        )
