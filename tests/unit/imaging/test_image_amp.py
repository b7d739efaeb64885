"""Mixed precision: nothing changes on the CPU (bit for bit); float16 autocast steps on CUDA (gpu)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedhealth.imaging.labels import LabelSpec
from fedhealth.imaging.loops import predict_images, train_images, use_amp
from fedhealth.models.image_model import ImageModel
from fedhealth.training.loops import LocalTrainConfig, _batches

SPEC = LabelSpec("binary")


def _data(n: int = 24, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, size=(n, 1, side, side)).astype(np.float32)
    return x, (np.arange(n) % 2).astype(np.float32)


def _reference_loop(model: nn.Module, x: np.ndarray, y: np.ndarray, config: LocalTrainConfig) -> None:
    """The float32 loop as it was before mixed precision (SGD, FedProx term, no augmentation)."""
    gen = torch.Generator().manual_seed(0)
    anchor = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    model.train()
    for idx in _batches(len(yt), config.batch_size, config.local_steps, config.local_epochs, gen):
        optimizer.zero_grad()
        logits = model(xt[idx])
        loss = nn.BCEWithLogitsLoss()(logits, yt[idx].float().reshape(logits.shape))
        prox = sum(((p - g) ** 2).sum() for p, g in zip(model.parameters(), anchor, strict=True))
        (loss + config.mu / 2 * prox).backward()
        optimizer.step()


@pytest.mark.parametrize("arch", ["small_cnn", "densenet121"])
def test_cpu_training_is_bit_identical_with_and_without_mixed_precision(arch: str) -> None:
    x, y = _data(side=32)
    config = LocalTrainConfig(lr=0.05, batch_size=8, local_steps=3, mu=0.1, optimizer="sgd")
    models = {flag: ImageModel(arch, 1, 1) for flag in ("on", "off", "reference")}
    cpu = torch.device("cpu")
    stats_on = train_images(
        models["on"],
        x,
        y,
        config,
        SPEC,
        augment=False,
        device=cpu,
        generator=torch.Generator().manual_seed(0),
    )
    stats_off = train_images(
        models["off"],
        x,
        y,
        config,
        SPEC,
        augment=False,
        device=cpu,
        generator=torch.Generator().manual_seed(0),
        mixed_precision=False,
    )
    _reference_loop(models["reference"], x, y, config)
    assert stats_on["train_loss"] == stats_off["train_loss"] and stats_on["steps"] == 3.0
    on, off, ref = (models[k].state_dict() for k in ("on", "off", "reference"))
    for name in ref:
        assert torch.equal(on[name], off[name]) and torch.equal(on[name], ref[name]), name
    first = next(iter(ref))
    assert not torch.equal(on[first], ImageModel(arch, 1, 1).state_dict()[first])  # it did train
    probs = predict_images(models["on"], x, SPEC, cpu)
    assert np.array_equal(probs, predict_images(models["on"], x, SPEC, cpu, mixed_precision=False))


def test_mixed_precision_only_on_cuda() -> None:
    assert use_amp(torch.device("cuda"), True) is True
    assert use_amp(torch.device("cuda"), False) is False
    assert use_amp(torch.device("cpu"), True) is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_amp_steps_on_cuda_trains_float32_weights_from_float16_activations() -> None:
    x, y = _data(n=32, side=64)
    model = ImageModel("densenet121", 1, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[torch.dtype] = []
    model.net.features.conv0.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    # four steps: the loss scaler may skip the first on overflow (it then halves its scale)
    config = LocalTrainConfig(lr=1e-3, batch_size=32, local_steps=4, optimizer="adam")
    stats = train_images(model, x, y, config, SPEC, augment=False, device=torch.device("cuda"))
    assert seen == [torch.float16] * 4  # the convolution ran in autocast
    assert stats["steps"] == 4.0 and np.isfinite(stats["train_loss"])
    assert all(v.dtype == before[k].dtype for k, v in model.state_dict().items())  # float32 weights
    assert next(model.parameters()).device.type == "cpu"  # handed back on the CPU
    assert not torch.equal(
        model.state_dict()["net.features.conv0.weight"], before["net.features.conv0.weight"]
    )
    probs = predict_images(model, x, SPEC, torch.device("cuda"))
    assert probs.dtype == np.float64 and probs.shape == (32,) and np.isfinite(probs).all()


def test_a_last_batch_of_one_image_is_skipped_for_batchnorm_models() -> None:
    x, y = _data(n=5, side=32)  # batches of 2, 2 and 1: DenseNet-121 at 32 px cannot train on one
    config = LocalTrainConfig(lr=1e-3, batch_size=2, local_epochs=1, optimizer="adam")
    stats = train_images(ImageModel("densenet121", 1, 1), x, y, config, SPEC, augment=False)
    assert stats["steps"] == 2.0
    stats = train_images(ImageModel("small_cnn", 1, 1), x, y, config, SPEC, augment=False)
    assert stats["steps"] == 3.0  # no BatchNorm: every batch trains
