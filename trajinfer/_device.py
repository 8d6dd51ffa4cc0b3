"""Device resolution: ``"auto"`` picks CUDA when present; an explicit request never falls back."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn a user's device choice into a :class:`torch.device`.

    Parameters
    ----------
    device
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
        :class:`torch.device`. ``None`` means ``"auto"``.

    Raises
    ------
    RuntimeError
        If CUDA is requested but not available (no silent CPU fallback).
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} was requested but CUDA is not available in this PyTorch build "
            f"(torch {torch.__version__}). Use device='cpu' or device='auto'."
        )
    return resolved
