"""Image classifiers for the chest X-ray path: the seed's small CNN and MONAI's DenseNet-121.

The small CNN has no BatchNorm (Opacus-compatible as is); DenseNet-121 has BatchNorm,
which DP-SGD must replace (see the privacy package). ``build_image_model`` is the one factory jobs
and benchmarks call, so a job config picks the architecture by name.
"""

from __future__ import annotations

from torch import nn

IMAGE_MODELS = ("small_cnn", "densenet121")


class SmallCNN(nn.Module):
    """Two conv blocks and a two-layer head (the seed's small CNN), for 28×28 or larger inputs.

    Args:
        in_channels: image channels (1 for X-rays, 3 for RGB such as RetinaMNIST).
        num_classes: output logits (1 for binary BCE, K for multi-class or multi-label).
        width: channels of the first conv block (the second has twice as many).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 1, width: int = 16) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d((7, 7)),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 49, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x):  # noqa: D102
        return self.head(self.features(x))


def build_image_model(name: str, *, in_channels: int = 1, num_classes: int = 1) -> nn.Module:
    """Build an image classifier by name (``small_cnn`` or ``densenet121``).

    Raises:
        ValueError: for an unknown name.
    """
    if name == "small_cnn":
        return SmallCNN(in_channels=in_channels, num_classes=num_classes)
    if name == "densenet121":
        from monai.networks.nets import DenseNet121

        return DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=num_classes)
    raise ValueError(f"model must be one of {IMAGE_MODELS}, not {name!r}.")
