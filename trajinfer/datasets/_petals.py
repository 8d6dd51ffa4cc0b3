"""Synthetic branching-and-merging 2-D "petals" data (after MIOFlow's petal data set)."""

from __future__ import annotations

import numbers

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["PETAL_HALF_WIDTH", "PETAL_NAMES", "petals"]

PETAL_NAMES = ("up", "right", "down", "left")
PETAL_HALF_WIDTH = 0.25


def petals(
    n_times: int = 5, n_per_time: int = 200, noise: float = 0.1, seed: int | np.random.Generator = 0
) -> ad.AnnData:
    """Four diamond-shaped petals growing outward from the origin, labelled by distance.

    Each petal is the outline of a diamond of length 1 and half-width 0.25 pointing up, right,
    down or left. A cell sits on one of the two edges of one petal at a distance ``s`` in [0, 1]
    along the petal axis, and its time label is ``s`` cut into ``n_times`` equal-width bins:
    the population starts at the centre, branches into eight edges that diverge, and each
    pair of edges merges again at its petal tip. Isotropic Gaussian noise is added last.

    Parameters
    ----------
    n_times
        Number of time labels (MIOFlow uses 5, 10 and 15); at least 2.
    n_per_time
        Number of cells at each time label; at least 1.
    noise
        Standard deviation of the Gaussian noise, in units of the petal length.
    seed
        Integer seed or NumPy ``Generator``; the same integer gives the same data.

    Returns
    -------
    anndata.AnnData
        ``n_times * n_per_time`` cells: ``X`` (float32, 2 columns), ``obs["time"]`` (float
        label 0 .. ``n_times - 1``, ``n_per_time`` cells each), ``obs["petal"]`` (categorical
        branch id), and the generation parameters in ``uns["petals"]``.
    """
    _check_int(n_times, "n_times", minimum=2)
    _check_int(n_per_time, "n_per_time", minimum=1)
    if not (isinstance(noise, numbers.Real) and np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0; got {noise!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.random.Generator)):
        raise TypeError(f"seed must be an int or a numpy.random.Generator; got {type(seed).__name__}.")
    rng = np.random.default_rng(seed)

    n = n_times * n_per_time
    time = np.repeat(np.arange(n_times), n_per_time)
    along = rng.uniform(time / n_times, (time + 1) / n_times)
    petal = rng.integers(0, len(PETAL_NAMES), n)
    side = rng.choice(np.array([-1.0, 1.0]), n)
    X = _petal_points(along, petal, side) + noise * rng.standard_normal((n, 2))

    adata = ad.AnnData(X.astype(np.float32))
    adata.obs_names = [f"cell{i}" for i in range(n)]
    adata.var_names = ["x", "y"]
    adata.obs["time"] = time.astype(float)
    adata.obs["petal"] = pd.Categorical.from_codes(petal, categories=list(PETAL_NAMES))
    adata.uns["petals"] = {
        "n_times": n_times, "n_per_time": n_per_time, "noise": float(noise), "half_width": PETAL_HALF_WIDTH,
    }
    return adata


def _petal_points(along: np.ndarray, petal: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Noise-free points at distance ``along`` on edge ``side`` (-1 or 1) of each ``petal``."""
    across = side * PETAL_HALF_WIDTH * (1.0 - np.abs(2.0 * along - 1.0))
    angle = np.pi / 2 - petal * (np.pi / 2)  # up, right, down, left
    axis = np.column_stack([np.cos(angle), np.sin(angle)])
    normal = np.column_stack([-axis[:, 1], axis[:, 0]])
    return along[:, None] * axis + across[:, None] * normal


def _check_int(value: object, name: str, *, minimum: int) -> None:
    """Raise unless ``value`` is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
