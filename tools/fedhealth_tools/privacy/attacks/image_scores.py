"""Score image reconstructions against the originals (SSIM, PSNR) and draw them side by side.

A reconstruction attack returns its images in no particular order, so each reconstruction is first
matched to one original by the Hungarian assignment (Kuhn 1955; :func:`scipy.optimize.linear_sum_assignment`)
that maximizes the summed SSIM. Both images of a pair are min-max scaled to [0, 1] on their own
before scoring (``data_range=1``): the site's images are z-scored per image, and an attack recovers
an image up to its intensity scale at best, so the scores measure what the picture shows, not its
gain and offset. SSIM is Wang et al. 2004 (scikit-image, 7×7 window); PSNR is capped at
:data:`PSNR_CAP` dB (identical images would give infinity), so means stay finite and JSON-safe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

PSNR_CAP = 100.0  # dB; reached when the mean squared error is below 1e-10
GRID_COLUMNS = 8
CELL_PX = 64  # pixels per image in the grid
TITLE_PX = 32  # pixels of the title band on top of the grid
DPI = 100


def _unit(image: np.ndarray) -> np.ndarray:
    """Min-max scaling to [0, 1] (a constant image becomes all zeros)."""
    image = np.asarray(image, dtype=np.float64)
    span = image.max() - image.min()
    return (image - image.min()) / span if span > 0 else np.zeros_like(image)


def _check(originals: np.ndarray, reconstructions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(originals), np.asarray(reconstructions)
    if a.ndim != 4 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"originals and reconstructions must both be (n, C, H, W) with the same shape, n >= 1; got "
            f"{a.shape} and {b.shape}."
        )
    return a, b


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (C, H, W) images on [0, 1]."""
    if a.shape[0] == 1:
        return float(structural_similarity(a[0], b[0], data_range=1.0))
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=0))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    if np.mean((a - b) ** 2) < 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return min(float(peak_signal_noise_ratio(a, b, data_range=1.0)), PSNR_CAP)


def score_reconstructions(originals: np.ndarray, reconstructions: np.ndarray) -> dict:
    """SSIM and PSNR of each original against its matched reconstruction.

    Args:
        originals: ``(n, C, H, W)`` images, any intensity scale.
        reconstructions: ``(n, C, H, W)`` in any order and scale.

    Returns:
        ``ssim_mean``, ``psnr_mean``, ``ssim`` and ``psnr`` (per original, lists of floats) and
        ``matching`` (``matching[i]`` is the reconstruction matched to original ``i``).

    Raises:
        ValueError: the two arrays are not (n, C, H, W) of one shape.
    """
    a, b = _check(originals, reconstructions)
    ua, ub = [_unit(x) for x in a], [_unit(x) for x in b]
    table = np.array([[_ssim(x, y) for y in ub] for x in ua])
    rows, cols = linear_sum_assignment(table, maximize=True)
    matching = [int(c) for _, c in sorted(zip(rows, cols, strict=True))]
    ssim = [float(table[i, j]) for i, j in enumerate(matching)]
    psnr = [_psnr(ua[i], ub[j]) for i, j in enumerate(matching)]
    return {
        "ssim_mean": float(np.mean(ssim)),
        "psnr_mean": float(np.mean(psnr)),
        "ssim": ssim,
        "psnr": psnr,
        "matching": matching,
    }


def grid_size_px(n: int) -> tuple[int, int]:
    """(width, height) in pixels of :func:`save_grid`'s PNG for ``n`` pairs."""
    cols, blocks = min(n, GRID_COLUMNS), -(-n // GRID_COLUMNS)
    return cols * CELL_PX, 2 * blocks * CELL_PX + TITLE_PX


def save_grid(
    originals: np.ndarray, reconstructions: np.ndarray, path: Path | str, *, title: str = ""
) -> dict:
    """A PNG of each original over its matched reconstruction, at most 8 columns a block.

    Each image is min-max scaled on its own and drawn in gray, :data:`CELL_PX` pixels square, under a
    title band of :data:`TITLE_PX` pixels (see :func:`grid_size_px`). Returns the scores (the matching
    it drew).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = _check(originals, reconstructions)
    scores = score_reconstructions(a, b)
    width, height = grid_size_px(len(a))
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    fig.text(0.5, 1 - TITLE_PX / 2 / height, title, ha="center", va="center", fontsize=8)
    for i, j in enumerate(scores["matching"]):
        block, col = divmod(i, GRID_COLUMNS)
        for row, image in ((2 * block, a[i]), (2 * block + 1, b[j])):
            top = TITLE_PX + row * CELL_PX
            ax = fig.add_axes(
                (col * CELL_PX / width, 1 - (top + CELL_PX) / height, CELL_PX / width, CELL_PX / height)
            )
            shown = _unit(image)
            ax.imshow(
                shown[0] if shown.shape[0] == 1 else np.moveaxis(shown, 0, -1), cmap="gray", vmin=0, vmax=1
            )
            ax.set_axis_off()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return scores
