"""Shared test fixtures."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

import trajinfer as tj

matplotlib.use("Agg")
# The test networks are tiny, so fits are dispatch-bound: one thread is several times faster
# than two on a 2-core machine, and avoids oversubscription when processes run side by side.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # trajinfer's deprecation warnings fail the test that triggers them: the suite uses the
    # current API, and the tests of a deprecation catch its warning with pytest.warns
    config.addinivalue_line("filterwarnings", "error:.*will be removed in the next release:FutureWarning")


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


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One torch thread for a module of tiny-tensor tests, where thread synchronisation costs more than it saves."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# Helpers of the fit tests (checkpoints, divergence, distributed and large fits). Plain functions
# rather than fixtures: the distributed test's worker processes import them too.
CLOUD_TIMES = [0.0, 1.0, 2.0]


def drifting_clouds(n: int = 150, dim: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Standard normal clouds of ``n`` points, shifted by ``k`` along every axis at time ``CLOUD_TIMES[k]``."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, dim)) + k for k in range(len(CLOUD_TIMES))]


#: Run settings of the test fits: on the CPU, without progress bar.
TEST_RUN = dict(device="cpu", progress=False)


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module (the benchmark scripts are not a package)."""
    bench = REPO_ROOT / "benchmarks"
    sys.path.insert(0, str(bench))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", bench / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def merged(base: dict, **changes) -> dict:
    """``base`` with ``changes`` applied, the ``run`` settings merged rather than replaced.

    ``merged(FAST, n_iter=5, run=dict(checkpoint_file=f))`` keeps ``FAST``'s device and progress
    settings and adds the checkpoint; a ``run`` dict or :class:`~trajinfer.RunConfig` merges
    into the base's, any other value replaces it.
    """
    out = {**base, **changes}
    old, new = base.get("run"), changes.get("run")
    if isinstance(old, (dict, tj.RunConfig)) and isinstance(new, (dict, tj.RunConfig)):
        out["run"] = {**_settings(old), **_settings(new)}
    return out


def _settings(run: dict | tj.RunConfig) -> dict:
    return dataclasses.asdict(run) if isinstance(run, tj.RunConfig) else dict(run)


def small_estimator(**params) -> tj.ActionMatching:
    """A small seeded eAM estimator on the CPU, without progress bar; ``params`` override the
    settings (a ``run`` dict is merged into the CPU, no-progress run settings)."""
    base = dict(method="eam", sigma=0.3, hidden_dims=(32, 32), batch_size=32, run=TEST_RUN, seed=3)
    return tj.ActionMatching(**merged(base, **params))


class FailingPath(tj.SnapshotPath):
    """A snapshot path whose loss draws fail from iteration ``at`` on (one draw per iteration).

    With ``error`` the draw raises it; without, it returns infinite samples.
    """

    def __init__(self, X, times, at: int, error: type[BaseException] | None = None, **path_params):
        super().__init__(X, times, **path_params)
        self.at, self.error, self.calls = at, error, 0

    def sample_triplet(self, tau, generator=None):
        self.calls += 1
        draws = super().sample_triplet(tau, generator)
        if self.calls > self.at:
            if self.error is not None:
                raise self.error("killed")
            return tuple(torch.full_like(x, float("inf")) for x in draws)
        return draws


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two modules hold the same parameter and buffer names with bitwise equal values."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
