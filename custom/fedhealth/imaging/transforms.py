"""MONAI dictionary transforms: decoded display values -> the model's size and channels, and augmentation.

``prepare`` is deterministic (its output is what the decoded cache stores): channel first, colour
to the model's channels (RGB averaged to one channel, or grayscale repeated to three), area
resampling to ``size × size``. ``augmentation`` is random and applied to training batches only: a
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
    RandAffined,
    RepeatChanneld,
    Resized,
)

KEY = "image"


def preprocess_settings(size: int, channels: int) -> dict:
    """The settings that shape a preprocessed image (part of the cache key and provenance)."""
    if size < 8:
        raise ValueError(f"image size must be at least 8 pixels, got {size}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}.")
    return {"size": int(size), "channels": int(channels), "resample": "area"}


def prepare(image: np.ndarray, size: int, channels: int) -> np.ndarray:
    """One decoded image to a float32 ``(channels, size, size)`` array in [0, 1]."""
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
    preprocess_settings(size, channels)
    out = Compose([*steps, Lambdad(keys=KEY, func=lambda x: torch.clamp(torch.as_tensor(x), 0.0, 1.0))])(data)
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
