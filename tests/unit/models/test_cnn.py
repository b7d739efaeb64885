from __future__ import annotations

import pytest
import torch

from fedhealth.models.cnn import SmallCNN, build_image_model

CASES = [
    ("small_cnn", 1, 1, 28),
    ("small_cnn", 3, 5, 28),
    ("small_cnn", 1, 14, 64),
    ("densenet121", 1, 1, 32),
]


@pytest.mark.parametrize(("name", "channels", "classes", "size"), CASES)
def test_output_shape(name, channels, classes, size):
    model = build_image_model(name, in_channels=channels, num_classes=classes)
    out = model(torch.zeros(2, channels, size, size))
    assert tuple(out.shape) == (2, classes)


def test_small_cnn_has_no_batchnorm_and_keeps_its_arguments():
    model = SmallCNN(in_channels=3, num_classes=5, width=8)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert (model.in_channels, model.num_classes, model.width) == (3, 5, 8)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="model must be one of"):
        build_image_model("resnet9000")


def test_tanh_small_cnn_builds_with_tanh_only_and_keeps_the_weight_names():
    relu = build_image_model("small_cnn")
    tanh = build_image_model("small_cnn", act="tanh")
    kinds = {type(m) for m in tanh.modules()}
    assert torch.nn.Tanh in kinds and torch.nn.ReLU not in kinds
    assert sum(isinstance(m, torch.nn.Tanh) for m in tanh.modules()) == 3
    assert {k: v.shape for k, v in tanh.state_dict().items()} == {
        k: v.shape for k, v in relu.state_dict().items()
    }
    assert tuple(tanh(torch.zeros(2, 1, 28, 28)).shape) == (2, 1)


def test_image_model_passes_the_activation_and_refuses_bad_ones():
    from fedhealth.models.image_model import ImageModel

    assert ImageModel("small_cnn", act="tanh").net.act == "tanh"
    with pytest.raises(ValueError, match=r"act must be one of \('relu', 'tanh'\), not 'gelu'"):
        build_image_model("small_cnn", act="gelu")
    with pytest.raises(ValueError, match="act 'tanh' applies to small_cnn only; densenet121 keeps its ReLUs"):
        build_image_model("densenet121", act="tanh")


def test_the_imaging_task_builds_and_loads_the_activation_it_names():
    from fedhealth.models.image_model import ImageModel
    from fedhealth.tasks.imaging import ImagingTask

    task = ImagingTask(model="small_cnn", act="tanh", mixed_precision=False)
    model = task.build_model(None)  # type: ignore[arg-type]
    assert model.net.act == "tanh" and any(isinstance(m, torch.nn.Tanh) for m in model.modules())
    weights = ImageModel("small_cnn", act="tanh", seed=3).state_dict()
    loaded = task.model_from_weights(weights, None)  # type: ignore[arg-type]
    assert torch.equal(loaded.state_dict()["net.head.1.weight"], weights["net.head.1.weight"])
    with pytest.raises(ValueError, match="act 'tanh' applies to small_cnn only"):
        ImagingTask(model="densenet121", image_size=32, act="tanh")
