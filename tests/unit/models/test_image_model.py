"""ImageModel: the architecture by name, seeded initial weights, and loading received weights safely."""

from __future__ import annotations

import pytest
import torch

from fedhealth.models.image_model import ImageModel, load_image_weights
from fedhealth.models.state import to_numpy

# (arch, channels, outputs, input side)
CASES = [("small_cnn", 1, 1, 28), ("small_cnn", 3, 5, 28), ("densenet121", 1, 14, 32)]


@pytest.mark.parametrize(("arch", "channels", "outputs", "side"), CASES)
def test_weights_round_trip_through_numpy_and_forward_shape(
    arch: str, channels: int, outputs: int, side: int
) -> None:
    sent = ImageModel(arch, channels, outputs, seed=1)
    received = load_image_weights(ImageModel(arch, channels, outputs, seed=2), to_numpy(sent))
    x = torch.rand(2, channels, side, side)
    sent.eval(), received.eval()
    with torch.no_grad():
        assert received(x).shape == (2, outputs)
        torch.testing.assert_close(received(x), sent(x))
    for key, value in received.state_dict().items():  # integer buffers (BatchNorm counters) keep their type
        assert value.dtype == sent.state_dict()[key].dtype


def test_seed_fixes_the_initial_weights() -> None:
    a, b, c = ImageModel(seed=0), ImageModel(seed=0), ImageModel(seed=1)
    assert torch.equal(a.net.head[3].weight, b.net.head[3].weight)
    assert not torch.equal(a.net.head[3].weight, c.net.head[3].weight)


def test_mismatched_weights_say_what_the_site_expected() -> None:
    with pytest.raises(ValueError) as info:
        load_image_weights(ImageModel("small_cnn", 1, 1), to_numpy(ImageModel("small_cnn", 1, 5)))
    assert "small_cnn with 1 channel(s), 1 output(s)" in str(info.value) and "shape of" in str(info.value)
    with pytest.raises(ValueError, match="missing"):
        load_image_weights(ImageModel("small_cnn"), {"net.head.3.bias": torch.zeros(1)})
    with pytest.raises(ValueError, match="arch must be one of"):
        ImageModel("resnet18")
