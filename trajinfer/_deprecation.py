"""Renamed keyword arguments, accepted under their old name for one release with a FutureWarning."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["UNSET", "renamed_keyword"]

#: Default of a deprecated keyword: tells "not passed" apart from every value a caller can pass.
UNSET: Any = object()


def renamed_keyword(value: Any, old_value: Any, *, function: str, old: str, new: str) -> Any:
    """The value of keyword ``new``, or of its deprecated name ``old`` when that was passed.

    Parameters
    ----------
    value
        The value of ``new`` (its default when the caller used ``old``).
    old_value
        The value of ``old``, :data:`UNSET` when not passed.
    function
        Name of the function, as the caller spells it in the warning (``"metrics.mmd"``).
    old, new
        The old and the new keyword.

    Warns
    -----
    FutureWarning
        When ``old`` was passed, naming ``new``; the warning points at the caller of ``function``.
    """
    if old_value is UNSET:
        return value
    warnings.warn(
        f"{function}({old}=...) is deprecated and will be removed in the next release; use {function}({new}=...).",
        FutureWarning, stacklevel=3,
    )
    return old_value
