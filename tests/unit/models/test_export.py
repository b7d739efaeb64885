"""TorchScript and ONNX exports of the kit's models give the torch model's outputs on real inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fedhealth.models.export import (
    ATOL,
    EXPORT_FILE,
    GLOBAL_MODEL_FILE,
    ParityError,
    export_model,
    image_model_args,
    load_global_model,
)
from fedhealth.models.image_model import ImageModel
from fedhealth.models.tabular import TabularNet
from fedhealth_tools.export_model import image_size, medmnist_test_images

ROOT = Path(__file__).resolve().parents[3]
CXR_SERVER = ROOT / "jobs" / "cxr_fedavg" / "app" / "config" / "config_fed_server.json"
DENSENET_SERVER = ROOT / "jobs" / "cxr_densenet" / "app" / "config" / "config_fed_server.json"
DENSENET_CLIENT = ROOT / "jobs" / "cxr_densenet" / "app" / "config" / "config_fed_client.json"

TABULAR_CASES = [("logreg", {}), ("mlp", {"hidden": 16})]


def _save_global(folder: Path, model: nn.Module) -> Path:
    """A job result's server folder with the model as PTFileModelPersistor saves it."""
    path = folder / "workspace" / "app_server" / GLOBAL_MODEL_FILE
    path.parent.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "train_conf": {"train": {"model": "x"}}}, path)
    return path


def _perturbed(model: nn.Module) -> nn.Module:
    """Weights and BatchNorm statistics unlike the seeded start (a trained model's are), so a wrong load
    would show; noise on each tensor's own scale keeps a deep net's outputs of a trained one's size."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                t.mul_(torch.exp(0.1 * noise))
            else:
                t.add_(0.1 * (t.abs().mean() + 1e-2) * noise)
    return model.eval()


def _heart_rows(heart_tables: dict) -> torch.Tensor:
    """Every site's test rows, standardized over all of them (what the model sees after scaling)."""
    rows = np.concatenate([test.features.to_numpy(np.float32) for _, test in heart_tables.values()])
    rows = (rows - rows.mean(0)) / np.where(rows.std(0) > 0, rows.std(0), 1.0)
    return torch.from_numpy(rows.astype(np.float32))


@pytest.mark.parametrize(("arch", "extra"), TABULAR_CASES, ids=[c[0] for c in TABULAR_CASES])
def test_heart_model_exports_match_torch(tmp_path: Path, heart_tables: dict, arch: str, extra: dict) -> None:
    rows = _heart_rows(heart_tables)
    assert rows.shape == (254, 10)
    original = _perturbed(TabularNet(in_features=rows.shape[1], arch=arch, **extra))
    _save_global(tmp_path / "result", original)

    model = load_global_model(tmp_path / "result")
    assert isinstance(model, TabularNet) and model.arch == arch and not model.training
    with torch.no_grad():
        assert torch.equal(model(rows), original(rows))
    result = export_model(model, rows, tmp_path / "out")

    assert result.samples == 254 and result.input_shape == (10,)
    assert result.torchscript_max_abs_diff <= ATOL and result.onnx_max_abs_diff <= ATOL
    assert result.torchscript.is_file() and result.onnx.is_file()
    written = json.loads((tmp_path / "out" / EXPORT_FILE).read_text())
    assert written["samples"] == 254 and written["onnx_max_abs_diff"] == result.onnx_max_abs_diff


def test_cxr_small_cnn_exports_match_torch(tmp_path: Path) -> None:
    config = json.loads(CXR_SERVER.read_text())
    assert image_model_args(config) == {"arch": "small_cnn", "in_channels": 1, "num_classes": 1}
    _save_global(tmp_path / "result", _perturbed(ImageModel("small_cnn")))
    images = medmnist_test_images(32)
    assert images.shape == (32, 1, 28, 28) and 0.0 <= images.min() < images.max() <= 1.0

    model = load_global_model(tmp_path / "result", config)
    result = export_model(model, images, tmp_path / "out")

    assert result.samples == 32 and result.input_shape == (1, 28, 28)
    assert result.torchscript_max_abs_diff <= ATOL and result.onnx_max_abs_diff <= ATOL


def test_cxr_densenet_exports_match_torch(tmp_path: Path) -> None:
    config = json.loads(DENSENET_SERVER.read_text())
    size = image_size(json.loads(DENSENET_CLIENT.read_text()))
    assert size == 64 and image_model_args(config)["arch"] == "densenet121"
    _save_global(tmp_path / "result", _perturbed(ImageModel(**image_model_args(config))))

    model = load_global_model(tmp_path / "result", config)
    result = export_model(model, medmnist_test_images(4, size=size), tmp_path / "out")

    assert result.input_shape == (1, 64, 64)
    assert result.torchscript_max_abs_diff <= ATOL and result.onnx_max_abs_diff <= ATOL


class _SignBranch(nn.Module):
    """Python control flow that tracing freezes: an export of it is wrong on negative inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if bool(x.sum() > 0) else x * 3


def test_parity_failure_raises_with_the_numbers(tmp_path: Path) -> None:
    inputs = torch.cat([torch.ones(2, 3), -torch.ones(2, 3)])  # traced on the first two (positive)
    with pytest.raises(
        ParityError, match=r"on 4 inputs: max abs diff TorchScript 1, ONNX 1 \(tolerance 1e-05\)"
    ):
        export_model(_SignBranch(), inputs, tmp_path)


def test_missing_model_and_foreign_weights_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no {GLOBAL_MODEL_FILE}"):
        load_global_model(tmp_path)
    _save_global(tmp_path, nn.Linear(3, 2, bias=False))
    with pytest.raises(ValueError, match=r"not a TabularNet and the server config names no .*ImageModel"):
        load_global_model(tmp_path)


def test_empty_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"non-empty batch .* got shape \(0, 3\)"):
        export_model(TabularNet(in_features=3), torch.zeros(0, 3), tmp_path)
