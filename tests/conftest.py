"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# The test networks are tiny, so fits are dispatch-bound: one thread is several times faster
# than two on a 2-core machine, and avoids oversubscription when processes run side by side.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    candidates = [os.environ.get("TRAJINFER_SHARED_DATA"), REPO_ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Directory of the benchmark data files (``../shared/data`` beside the repository)."""
    path = _shared_data_dir()
    if path is None:
        pytest.skip("benchmark data directory not found (set TRAJINFER_SHARED_DATA)")
    return path
