"""Scores of reconstructions: SSIM/PSNR after min-max scaling, Hungarian matching, the PNG grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedhealth_tools.privacy.attacks.image_scores import (
    PSNR_CAP,
    grid_size_px,
    save_grid,
    score_reconstructions,
)

RNG = np.random.default_rng(0)


def _smooth_images(n: int, size: int = 28) -> np.ndarray:
    """Distinct smooth images (blobs at different places), shape (n, 1, size, size)."""
    yy, xx = np.mgrid[0:size, 0:size]
    centres = np.random.default_rng(1).uniform(4, size - 4, size=(n, 2))
    return np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)[None] for cy, cx in centres])


def test_identical_images_score_ssim_one_and_capped_psnr() -> None:
    x = _smooth_images(3)
    scores = score_reconstructions(x, 5.0 * x - 2.0)  # same picture at another gain and offset
    assert scores["ssim"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert scores["psnr"] == [PSNR_CAP] * 3
    assert scores["psnr_mean"] == PSNR_CAP
    assert scores["matching"] == [0, 1, 2]


def test_noise_scores_low() -> None:
    x = _smooth_images(4)
    scores = score_reconstructions(x, RNG.normal(size=x.shape))
    assert scores["ssim_mean"] < 0.1
    assert scores["psnr_mean"] < 12.0


def test_matching_recovers_a_permutation() -> None:
    x = _smooth_images(6)
    perm = np.array([3, 0, 5, 1, 4, 2])  # reconstruction j shows original perm[j]
    rec = x[perm] + 0.001 * RNG.normal(size=x.shape)
    scores = score_reconstructions(x, rec)
    assert scores["matching"] == [int(np.where(perm == i)[0][0]) for i in range(6)]
    assert min(scores["ssim"]) > 0.8


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match=r"same shape.*\(2, 1, 28, 28\) and \(3, 1, 28, 28\)"):
        score_reconstructions(np.zeros((2, 1, 28, 28)), np.zeros((3, 1, 28, 28)))


@pytest.mark.parametrize("n", [3, 8, 11])
def test_grid_png_has_the_documented_pixel_size(tmp_path: Path, n: int) -> None:
    x = _smooth_images(n)
    path = tmp_path / "grid" / "g.png"
    scores = save_grid(x, x[::-1].copy(), path, title="test")
    with Image.open(path) as png:
        assert png.size == grid_size_px(n)
    assert grid_size_px(n) == (64 * min(n, 8), 2 * 64 * -(-n // 8) + 32)
    assert scores["matching"] == list(range(n))[::-1]
