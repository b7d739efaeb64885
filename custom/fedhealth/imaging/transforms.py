"""MONAI dictionary transforms: decoded display values -> the model's size and channels, and augmentation.

``prepare`` is deterministic (its output is what the decoded cache stores): channel first, colour
to the model's channels (RGB averaged to one channel, or grayscale repeated to three), area
resampling to ``size × size``, and by default a per-image z-score of the intensities (MONAI
``NormalizeIntensityd``), which takes out a scanner's gain and offset so that sites with different
equipment feed the model comparable values. ``augmentation`` is random and applied to training batches only: a
small affine jitter (rotation, scale, shift) of the kind used for chest X-ray classifiers
(Rajpurkar et al. 2017, CheXNet), never a left-right flip, which would move the heart.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    Lambdad,
    NormalizeIntensityd,
    RandAffined,
    RepeatChanneld,
    Resized,
)

KEY = "image"
INTENSITY_MODES = ("zscore", "none")


def preprocess_settings(size: int, channels: int, intensity: str = "zscore") -> dict:
    """The settings that shape a preprocessed image (part of the cache key and provenance)."""
    if size < 8:
        raise ValueError(f"image size must be at least 8 pixels, got {size}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    if intensity not in INTENSITY_MODES:
        raise ValueError(f"intensity must be one of {INTENSITY_MODES}, not {intensity!r}.")
    return {"size": int(size), "channels": int(channels), "resample": "area", "intensity": intensity}


def prepare(image: np.ndarray, size: int, channels: int, intensity: str = "zscore") -> np.ndarray:
    """One decoded image to a float32 ``(channels, size, size)`` array (z-scored; in [0, 1] with ``none``)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:  # (H, W, 3) colour: channel first, then to the model's channels
        chw = np.moveaxis(image, -1, 0)
        if channels == 1:
            chw = chw.mean(axis=0, keepdims=True)
        data = {KEY: chw}
        steps = [Resized(keys=KEY, spatial_size=(size, size), mode="area")]
    else:
        data = {KEY: image}
        steps = [
            EnsureChannelFirstd(keys=KEY, channel_dim="no_channel"),
            Resized(keys=KEY, spatial_size=(size, size), mode="area"),
        ]
        if channels == 3:
            steps.append(RepeatChanneld(keys=KEY, repeats=3))
    preprocess_settings(size, channels, intensity)
    steps.append(Lambdad(keys=KEY, func=lambda x: torch.clamp(torch.as_tensor(x), 0.0, 1.0)))
    if intensity == "zscore":
        steps.append(NormalizeIntensityd(keys=KEY, channel_wise=True))
    out = Compose(steps)(data)
    return np.asarray(out[KEY], dtype=np.float32)


def augmentation(seed: int = 0, prob: float = 0.8) -> Compose:
    """Random affine jitter for training images (channel-first tensors), reproducible with ``seed``."""
    aug = Compose(
        [
            RandAffined(
                keys=KEY,
                prob=prob,
                rotate_range=0.15,
                scale_range=(0.1, 0.1),
                translate_range=(2, 2),
                padding_mode="border",
                mode="bilinear",
            )
        ]
    )
    aug.set_random_state(seed=seed)
    return aug


def augment_batch(batch: torch.Tensor, aug: Compose) -> torch.Tensor:
    """Apply ``aug`` to each image of a ``(B, C, H, W)`` batch."""
    return torch.stack([torch.as_tensor(aug({KEY: img})[KEY]) for img in batch]).float()


def random_affine_batch(
    batch: torch.Tensor, generator: torch.Generator | None = None, prob: float = 0.8
) -> torch.Tensor:
    """The jitter of :func:`augmentation`, drawn per image for a whole ``(B, C, H, W)`` batch at once.

    Same ranges as ``augmentation`` (rotation ±0.15 rad, scale ×(1 ± 0.1), shift ±2 pixels, border
    padding, bilinear, applied with probability ``prob``), as one ``affine_grid``/``grid_sample`` call:
    DP-SGD's augmentation multiplicity (De et al. 2022) augments K copies of every image of every
    step, too many for one MONAI call per image.
    """
    if batch.ndim != 4:
        raise ValueError(f"random_affine_batch needs a (B, C, H, W) batch, got shape {tuple(batch.shape)}.")
    n, _, h, w = batch.shape
    if n == 0:
        return batch
    x = batch.float()

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle, scale = uniform(-0.15, 0.15), 1.0 + uniform(-0.1, 0.1)
    shift_x, shift_y = uniform(-2.0, 2.0) * 2.0 / w, uniform(-2.0, 2.0) * 2.0 / h
    apply = torch.rand(n, generator=generator) < prob
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], dim=1), torch.stack([sin, cos, shift_y], dim=1)], dim=1
    )
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3)
    theta = torch.where(apply[:, None, None], theta, identity)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(
        x, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
