"""How far pushed cells land from the observed cells: the guard of push, fate and decode."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from .._neighbors import NeighborIndex, NeighborKernel
from .._settings import WARNED

__all__ = [
    "OFF_SUPPORT_FACTOR", "OFF_SUPPORT_WARN_FRACTION", "OffSupportWarning", "SupportCheck", "SupportIndex", "check_support",
    "warn_off_support",
]

logger = logging.getLogger(__name__)

#: A pushed cell is off the data's support when its distance to the nearest observed cell
#: exceeds this many typical nearest-neighbour distances of the observed cells.
OFF_SUPPORT_FACTOR = 3.0
#: Warn when more than this fraction of the pushed cells is off the support.
OFF_SUPPORT_WARN_FRACTION = 0.1


class OffSupportWarning(UserWarning):
    """Many simulated cells landed far from every observed cell: results there are extrapolation."""


@dataclass(frozen=True)
class SupportCheck:
    """Distances of pushed cells to the observed cells.

    Attributes
    ----------
    ratio
        Per pushed cell, the distance to the nearest observed cell over the typical (median)
        nearest-neighbour distance among the observed cells.
    off_support_fraction
        Fraction of pushed cells with ``ratio > OFF_SUPPORT_FACTOR``.
    """

    ratio: np.ndarray
    off_support_fraction: float


class SupportIndex:
    """Nearest-neighbour index of the observed cells, built once for any number of checks.

    Parameters
    ----------
    observed
        The observed cells, shape (m, d), in the fitted representation.

    Attributes
    ----------
    typical
        Median distance from an observed cell to its nearest other observed cell (measured on
        at most 2,000 of them).
    """

    def __init__(self, observed: np.ndarray) -> None:
        self._kernel = NeighborKernel(NeighborIndex(observed), 1)
        self.typical = self._kernel.spacing

    def ratio(self, pushed: np.ndarray) -> np.ndarray:
        """Per pushed cell, the distance to the nearest observed cell over :attr:`typical`."""
        distance = self._kernel.index.query(pushed, 1)[0][:, 0]
        return distance / max(self.typical, 1e-12)


def check_support(
    pushed: np.ndarray, observed: np.ndarray | SupportIndex, *, what: str = "pushed cells", warn: bool = True
) -> SupportCheck:
    """Measure how far ``pushed`` lands from ``observed`` and warn when much of it is off support.

    Parameters
    ----------
    pushed
        Simulated cells, shape (n, d), in the fitted representation.
    observed
        The observed cells they are compared with (e.g. all cells of the data), shape (m, d), or
        their :class:`SupportIndex` when the same cells are checked against repeatedly.
    what
        How the pushed cells are called in the warning.
    warn
        Emit an :class:`OffSupportWarning` when more than ``OFF_SUPPORT_WARN_FRACTION`` is off.
    """
    index = observed if isinstance(observed, SupportIndex) else SupportIndex(observed)
    ratio = index.ratio(pushed)
    fraction = float(np.mean(ratio > OFF_SUPPORT_FACTOR)) if len(ratio) else 0.0
    if warn and fraction > OFF_SUPPORT_WARN_FRACTION:
        warn_off_support(
            f"{100 * fraction:.0f}% of the {what} landed more than {OFF_SUPPORT_FACTOR:g} typical neighbour distances "
            "from every observed cell: results for them are extrapolation. Check the fit (model.diagnostics_), try "
            "interpolation='ot', or simulate over a shorter time.",
            stacklevel=4,
        )
    return SupportCheck(ratio=ratio, off_support_fraction=fraction)


def warn_off_support(message: str, *, stacklevel: int) -> None:
    """Log ``message`` and warn with it as an :class:`OffSupportWarning` (``stacklevel`` as for
    :func:`warnings.warn`, counted from this function)."""
    logger.warning(message, extra=WARNED)  # printed once, by the warning
    warnings.warn(message, OffSupportWarning, stacklevel=stacklevel)
