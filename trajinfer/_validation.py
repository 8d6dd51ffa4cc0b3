"""Input checks that fail early with a message naming the fix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_float_tensor(
    X: Any, *, name: str = "X", dim: int | None = None, device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Convert an array-like of shape ``(n, d)`` to a finite float tensor on ``device``.

    Raises
    ------
    ValueError
        On a wrong number of axes, a wrong feature dimension, no rows, or NaN/Inf values.
    """
    if isinstance(X, torch.Tensor):
        tensor = X.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(X, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a numeric array of shape (n, d).") from err
    if tensor.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (n_samples, n_features); got shape {tuple(tensor.shape)}. "
            "Reshape a single sample with X.reshape(1, -1)."
        )
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} has no rows.")
    if dim is not None and tensor.shape[1] != dim:
        raise ValueError(
            f"{name} has {tensor.shape[1]} features but the model was fitted on {dim}. "
            "Pass data in the representation used for fitting."
        )
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or Inf values; remove or impute them first.")
    return tensor.to(device=device, dtype=dtype)


def as_time_tensor(
    t: Any, n: int, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Broadcast a scalar or ``(n,)`` time array to a tensor of shape ``(n,)``."""
    tensor = torch.as_tensor(np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64))
    if tensor.ndim == 0:
        tensor = tensor.expand(n)
    if tensor.shape != (n,):
        raise ValueError(f"t must be a scalar or have shape ({n},); got shape {tuple(tensor.shape)}.")
    if not torch.isfinite(tensor).all():
        raise ValueError("t contains NaN or Inf values.")
    return tensor.to(device=device, dtype=dtype)


def check_time_in_range(t: torch.Tensor | float, t_range: tuple[float, float], *, what: str = "t") -> None:
    """Raise if a time lies outside the fitted time range (small rounding tolerance)."""
    lo, hi = t_range
    tol = 1e-6 * max(1.0, abs(hi - lo))
    values = torch.as_tensor(t, dtype=torch.float64)
    if bool((values < lo - tol).any() or (values > hi + tol).any()):
        bad = values[(values < lo - tol) | (values > hi + tol)].flatten()[0].item()
        raise ValueError(
            f"{what}={bad:g} lies outside the fitted time range [{lo:g}, {hi:g}]; the model "
            "cannot extrapolate. Choose a time inside that range or refit on data that covers it."
        )
