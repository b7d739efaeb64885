"""The image classifier a job names by configuration: one class for the persistor and the sites.

FLARE's ``PTFileModelPersistor`` builds the initial model from a class path and arguments, and a
site allow-list admits ``fedhealth.`` classes; ``ImageModel`` wraps :func:`build_image_model` so a
job picks ``small_cnn`` or ``densenet121`` (CheXNet's architecture, Rajpurkar et al. 2017) with one
argument, and ``norm="group"`` for the GroupNorm DenseNet-121 that DP-SGD needs. Weight names are
the wrapped network's, prefixed ``net.`` (the BatchNorm version's are unchanged by the option).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fedhealth.models.cnn import IMAGE_MODELS, build_image_model
from fedhealth.models.state import to_tensors


class ImageModel(nn.Module):
    """An image classifier chosen by name.

    Args:
        arch: ``small_cnn`` or ``densenet121``.
        in_channels: image channels (1 for X-rays, 3 for RGB).
        num_classes: output logits (1 for binary, K for multi-class or multi-label).
        norm: ``batch`` (default) or ``group`` (densenet121 with GroupNorm, accepted by Opacus).
        seed: seed of the initial weights (None: torch's global state), so every run starts alike.
        act: ``relu`` (default) or ``tanh`` (small_cnn with tanh activations, Papernot et al. 2021).
    """

    def __init__(
        self,
        arch: str = "small_cnn",
        in_channels: int = 1,
        num_classes: int = 1,
        seed: int | None = 0,
        norm: str = "batch",
        act: str = "relu",
    ) -> None:
        super().__init__()
        if arch not in IMAGE_MODELS:
            raise ValueError(f"arch must be one of {IMAGE_MODELS}, not {arch!r}.")
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"in_channels and num_classes must be at least 1, got {in_channels}, {num_classes}."
            )
        self.arch = arch
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.seed = seed
        self.norm = norm
        self.act = act
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.net = build_image_model(
                arch, in_channels=in_channels, num_classes=num_classes, norm=norm, act=act
            )

    def forward(self, x):  # noqa: D102
        return self.net(x)


def load_image_weights(model: ImageModel, weights: Mapping[str, object]) -> ImageModel:
    """Load received weights into ``model``; a mismatch says which architecture the site expected.

    Raises:
        ValueError: names or shapes differ from the site's model (the job's server and site configs disagree).
    """
    expected = model.state_dict()
    tensors = to_tensors(weights)
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or extra or wrong:
        norm = f" ({model.norm} norm)" if model.arch == "densenet121" else ""
        detail = (
            (missing and f"missing {missing[:3]}")
            or (extra and f"unexpected {extra[:3]}")
            or f"shape of {wrong[:3]}"
        )
        raise ValueError(
            f"the received weights do not fit this site's {model.arch}{norm} with {model.in_channels} "
            "channel(s), "
            f"{model.num_classes} output(s) ({detail}); the job's server model and site executor disagree"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    return model
