"""trajinfer: learn how a population moves through time from snapshots.

Action Matching (AM) and its entropic (eAM), unbalanced (uAM), combined (ueAM) and
convex-cost (c-AM) variants, with a scanpy-like front end for time-course single-cell data.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from . import metrics
from ._run import RunConfig
from ._saved import load
from ._settings import settings
from .dynamics import Dynamics
from .estimator import ActionMatching
from .paths import CallablePath, MarginalPath, SnapshotPath
from .trajectories import Trajectories

_LAZY_SUBMODULES = {"pp", "tl", "pl", "datasets", "quantum", "vision"}
_LAZY_ATTRIBUTES = {"fit": "tl"}

__all__ = [
    "ActionMatching",
    "CallablePath",
    "Dynamics",
    "MarginalPath",
    "RunConfig",
    "SnapshotPath",
    "Trajectories",
    "fit",
    "load",
    "metrics",
    "settings",
    *sorted(_LAZY_SUBMODULES),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_ATTRIBUTES:
        module = importlib.import_module(f".{_LAZY_ATTRIBUTES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'trajinfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
