"""Seed handling shared by the estimator, paths and simulation."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SeedLike", "as_int_seed", "torch_generator"]

SeedLike = int | np.random.Generator | None


def as_int_seed(seed: SeedLike) -> int:
    """Return an integer seed from an int, a NumPy ``Generator`` or ``None`` (fresh entropy)."""
    if seed is None:
        return int(np.random.default_rng().integers(2**31 - 1))
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**31 - 1))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed)
    raise TypeError(f"seed must be an int, a numpy.random.Generator or None, got {type(seed).__name__}.")


def torch_generator(seed: SeedLike, device: torch.device) -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded from ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(as_int_seed(seed))
    return generator
