"""Input checks that fail early with a message naming the fix.

Estimator parameters are checked against a declarative table (``_parameter_constraints`` of
:class:`~trajinfer.ActionMatching`): each entry maps a parameter name to a
:class:`Constraint` (an :class:`Interval` of numbers, a set of :class:`Options`, ...), and
:func:`validate_params` checks them all. A value of the wrong type raises ``TypeError``, a value
of the right type outside the allowed set ``ValueError``; both name the parameter, the value and
what is allowed.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ._device import resolve_device

__all__ = [
    "Constraint", "Device", "Interval", "Options", "PositiveIntegers", "as_float_tensor", "as_time_tensor",
    "check_parameter", "check_time_in_range", "validate_params",
]


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


# ----------------------------------------------------------------- parameter constraints
class Constraint(ABC):
    """What one parameter accepts, and how to say it in an error message."""

    allows_none: bool = False

    @abstractmethod
    def accepts_type(self, value: Any) -> bool:
        """Whether ``value`` has an accepted type (otherwise ``TypeError``)."""

    @abstractmethod
    def accepts(self, value: Any) -> bool:
        """Whether ``value``, of an accepted type, is allowed (otherwise ``ValueError``)."""

    @abstractmethod
    def describe(self) -> str:
        """The allowed values, as read after "must be"."""

    def message(self, name: str, value: Any) -> str:
        """The error for parameter ``name`` holding ``value``."""
        kind = "" if self.accepts_type(value) else f" of type {type(value).__name__}"
        return f"{name} must be {self.describe()}, got {value!r}{kind}."


def _or_names(names: tuple[str, ...]) -> str:
    """`` or 'auto'``-style suffix of a constraint's description for the names it accepts."""
    return "".join(f" or {name!r}" for name in names)


def _is_number(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


@dataclass(frozen=True)
class Interval(Constraint):
    """Integers or real numbers in a range.

    Parameters
    ----------
    kind
        ``numbers.Integral`` or ``numbers.Real`` (booleans are refused as either).
    low, high
        Bounds; ``high=None`` leaves the range open above.
    closed
        Which bounds belong to the range: ``"left"``, ``"right"``, ``"both"`` or ``"neither"``.
    allows_none
        Whether ``None`` is accepted too.
    names
        Names accepted besides the numbers (such as ``"auto"``).
    """

    kind: type
    low: float
    high: float | None = None
    closed: Literal["left", "right", "both", "neither"] = "left"
    allows_none: bool = False
    names: tuple[str, ...] = ()

    def accepts_type(self, value: Any) -> bool:
        return _is_number(value, self.kind) or (isinstance(value, str) and value in self.names)

    def accepts(self, value: Any) -> bool:
        if isinstance(value, str):
            return value in self.names
        low_in, high_in = self.closed in ("left", "both"), self.closed in ("right", "both")
        above = value >= self.low if low_in else value > self.low
        below = self.high is None or (value <= self.high if high_in else value < self.high)
        return bool(above and below)

    def describe(self) -> str:
        noun = "integer" if self.kind is numbers.Integral else "number"
        article = "an" if noun == "integer" else "a"
        low_in, high_in = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.high is not None:
            text = f"{article} {noun} in {'[' if low_in else '('}{self.low}, {self.high}{']' if high_in else ')'}"
        elif (self.low, low_in) == (0, False) or (noun == "integer" and (self.low, low_in) == (1, True)):
            text = f"a positive {noun}"
        elif (self.low, low_in) == (0, True):
            text = f"a non-negative {noun}"
        else:
            text = f"{article} {noun} {'>=' if low_in else '>'} {self.low}"
        return text + _or_names(self.names) + (" or None" if self.allows_none else "")


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of names."""

    values: tuple[str, ...]

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, str)

    def accepts(self, value: Any) -> bool:
        return value in self.values

    def describe(self) -> str:
        return f"one of {self.values}"

    def message(self, name: str, value: Any) -> str:
        return f"Unknown {name} {value!r}; choose one of {self.values}."


@dataclass(frozen=True)
class PositiveIntegers(Constraint):
    """A non-empty sequence of positive integers (layer widths), or one of ``names`` (such as ``"auto"``)."""

    names: tuple[str, ...] = ()

    def accepts_type(self, value: Any) -> bool:
        if isinstance(value, str):
            return value in self.names
        return isinstance(value, (Sequence, np.ndarray)) and all(_is_number(item, numbers.Integral) for item in value)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) or (len(value) > 0 and min(value) >= 1)

    def describe(self) -> str:
        return "a non-empty sequence of positive integers" + _or_names(self.names)


@dataclass(frozen=True)
class Device(Constraint):
    """A device name that :func:`~trajinfer._device.resolve_device` understands, a
    ``torch.device``, or ``None`` (``"auto"``).

    A device this machine lacks (CUDA without CUDA) is a valid name: resolving it raises the
    ``RuntimeError`` that says so.
    """

    allows_none: bool = True

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, (str, torch.device))

    def accepts(self, value: Any) -> bool:
        try:
            resolve_device(value)
        except ValueError:
            return False
        return True

    def describe(self) -> str:
        return "'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device"

    def message(self, name: str, value: Any) -> str:
        return f"Unknown {name} {value!r}; use {self.describe()}."


def check_parameter(name: str, value: Any, constraint: Constraint) -> None:
    """Raise if parameter ``name`` holding ``value`` breaks ``constraint``.

    Raises
    ------
    TypeError
        If ``value`` has a type the constraint does not accept.
    ValueError
        If ``value`` has an accepted type but lies outside the allowed values.
    """
    if value is None and constraint.allows_none:
        return
    if not constraint.accepts_type(value):
        raise TypeError(constraint.message(name, value))
    if not constraint.accepts(value):
        raise ValueError(constraint.message(name, value))


def validate_params(params: Mapping[str, Any], constraints: Mapping[str, Constraint]) -> None:
    """Check each parameter named in ``constraints`` (see :func:`check_parameter`)."""
    for name, constraint in constraints.items():
        check_parameter(name, params[name], constraint)
