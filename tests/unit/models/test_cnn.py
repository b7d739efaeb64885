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
