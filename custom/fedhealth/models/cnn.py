"""Image classifiers for the chest X-ray path: the seed's small CNN and MONAI's DenseNet-121.

The small CNN has no BatchNorm (Opacus-compatible as is); DenseNet-121 has BatchNorm by default
(``norm="batch"``, MONAI's weight names, so existing checkpoints load). ``norm="group"`` builds it
with GroupNorm (32 groups: every DenseNet-121 width is a multiple of 32, the groups Opacus's own fix
picks) and out-of-place ReLUs, which Opacus's per-example gradients accept as is, so a DP-SGD job's
server and sites build the same model from the job config. ``build_image_model`` is the one factory
jobs and benchmarks call, so a job config picks the architecture by name. ``act="tanh"`` gives the
small CNN tanh activations, which Papernot et al. 2021 ("Tempered Sigmoid Activations for Deep
Learning with Differential Privacy") found to lose less accuracy under DP-SGD than ReLU: bounded
activations keep gradient norms from exploding, so clipping throws less of the signal away.
"""

from __future__ import annotations

from torch import nn

IMAGE_MODELS = ("small_cnn", "densenet121")
NORMS = ("batch", "group")
ACTIVATIONS = ("relu", "tanh")
GROUPS = 32  # GroupNorm groups in DenseNet-121 (gcd(32, width) = 32 at every width)


class SmallCNN(nn.Module):
    """Two conv blocks and a two-layer head (the seed's small CNN), for 28×28 or larger inputs.

    Args:
        in_channels: image channels (1 for X-rays, 3 for RGB such as RetinaMNIST).
        num_classes: output logits (1 for binary BCE, K for multi-class or multi-label).
        width: channels of the first conv block (the second has twice as many).
        act: ``relu`` (the seed's) or ``tanh`` (Papernot et al. 2021, for DP-SGD).
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 1, width: int = 16, act: str = "relu"
    ) -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {ACTIVATIONS}, not {act!r}.")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width
        self.act = act
        layer = nn.Tanh if act == "tanh" else nn.ReLU
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
            layer(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, kernel_size=3, padding=1),
            layer(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d((7, 7)),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 49, 64),
            layer(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x):  # noqa: D102
        return self.head(self.features(x))


def check_norm(name: str, norm: str) -> None:
    """Refuse a normalization the architecture does not have.

    Raises:
        ValueError: ``norm`` is not ``batch`` or ``group``, or ``group`` for the small CNN (it has no
            normalization layers, so the option would silently do nothing).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not {norm!r}.")
    if norm == "group" and name != "densenet121":
        raise ValueError(
            f"norm 'group' applies to densenet121 only; {name} has no normalization layers "
            "(Opacus accepts it as is)."
        )


def build_image_model(
    name: str, *, in_channels: int = 1, num_classes: int = 1, norm: str = "batch", act: str = "relu"
) -> nn.Module:
    """Build an image classifier by name (``small_cnn`` or ``densenet121``).

    Args:
        name: the architecture.
        in_channels: image channels.
        num_classes: output logits.
        norm: ``batch`` (MONAI's DenseNet-121 as is) or ``group`` (GroupNorm and out-of-place
            ReLUs, for DP-SGD; densenet121 only).
        act: ``relu`` or ``tanh`` (small_cnn only; tempered activations for DP-SGD, Papernot et al. 2021).

    Raises:
        ValueError: for an unknown name, norm or activation, ``group`` for the small CNN, or ``tanh``
            for densenet121.
    """
    if name not in IMAGE_MODELS:
        raise ValueError(f"model must be one of {IMAGE_MODELS}, not {name!r}.")
    check_norm(name, norm)
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {ACTIVATIONS}, not {act!r}.")
    if act != "relu" and name != "small_cnn":
        raise ValueError(f"act {act!r} applies to small_cnn only; {name} keeps its ReLUs.")
    if name == "small_cnn":
        return SmallCNN(in_channels=in_channels, num_classes=num_classes, act=act)
    from monai.networks.nets import DenseNet121

    if norm == "group":
        return DenseNet121(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=num_classes,
            norm=("group", {"num_groups": GROUPS}),
            act=("relu", {"inplace": False}),
        )
    return DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=num_classes)
