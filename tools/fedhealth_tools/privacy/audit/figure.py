"""One PNG of several audited settings: each a band of originals over the server's reconstructions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLUMNS = 8  # images shown per setting (the first ones of the batch)


def _unit(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float64)
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def draw_panels(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, dict]], path: Path, *, title: str = ""
) -> Path:
    """``panels``: ``(label, originals, reconstructions, scores)``; each reconstruction is drawn under the
    original the scores matched it to, every image min-max scaled on its own."""
    rows = 2 * len(panels)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(COLUMNS * 1.1, rows * 1.15 + 0.4), squeeze=False)
    for p, (label, originals, recons, scores) in enumerate(panels):
        shown = min(COLUMNS, len(originals))
        for c in range(COLUMNS):
            top, bottom = axes[2 * p][c], axes[2 * p + 1][c]
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.axis("off")
            if c >= shown:
                continue
            match = scores["matching"][c]
            top.imshow(_unit(originals[c][0]), cmap="gray", vmin=0, vmax=1)
            bottom.imshow(_unit(recons[match][0]), cmap="gray", vmin=0, vmax=1)
            bottom.set_title(f"{scores['ssim'][c]:.2f}", fontsize=6)
        axes[2 * p][0].set_title(label, fontsize=7, loc="left")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
