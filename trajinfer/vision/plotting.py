"""Image grids saved as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["image_grid", "save_image_grid"]


def image_grid(
    images: Any, image_shape: tuple[int, int, int] | None = None, *, ncol: int = 8, padding: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile images into one array.

    Parameters
    ----------
    images
        (n, C, H, W) or flat (n, C*H*W) with ``image_shape``, values in [-1, 1] (clipped).
    image_shape
        ``(C, H, W)`` for flat input.
    ncol
        Images per row.
    padding
        Pixels between images.
    pad_value
        Value of the padding in [0, 1].

    Returns
    -------
    numpy.ndarray
        (rows, cols) for grayscale or (rows, cols, 3) for colour, values in [0, 1].
    """
    x = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=np.float32)
    if x.ndim == 2:
        if image_shape is None:
            raise ValueError("Flat images need image_shape=(C, H, W).")
        x = x.reshape(-1, *image_shape)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"Images must be (n, 1 or 3, H, W); got {x.shape}.")
    n, c, h, w = x.shape
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    grid = np.full((c, nrow * (h + padding) + padding, ncol * (w + padding) + padding), pad_value, dtype=np.float32)
    x = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top : top + h, left : left + w] = x[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_image_grid(
    path: str | Path, images: Any, image_shape: tuple[int, int, int] | None = None, *, ncol: int = 8,
    scale: int = 4, padding: int = 1,
) -> Path:
    """Save a grid of images in [-1, 1] as a PNG, enlarged ``scale`` times (nearest neighbour).

    Parameters
    ----------
    path
        Output file.
    images, image_shape, ncol, padding
        See :func:`image_grid`.
    scale
        Integer upscaling factor so that small images stay legible.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import matplotlib.pyplot as plt

    grid = image_grid(images, image_shape, ncol=ncol, padding=padding)
    scale = max(1, int(scale))
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0)
    return path
