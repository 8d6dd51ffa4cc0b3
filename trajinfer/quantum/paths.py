"""Marginal paths over quantum densities ``|ψ(·, t)|²`` for :meth:`trajinfer.ActionMatching.fit`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import sqrt

import numpy as np
import torch

from .._random import SeedLike
from ..paths import MarginalPath
from .hydrogen import (
    BOHR_RADIUS,
    DEFAULT_STATES,
    CallableWavefunction,
    HydrogenSuperposition,
    Wavefunction,
)
from .sampling import SnapshotSeries, generate_dataset

__all__ = ["TIME_SELECTIONS", "DatasetPath", "HydrogenPath", "WavefunctionPath"]

TIME_SELECTIONS = ("nearest", "bracket")


class DatasetPath(MarginalPath):
    """A path through independent samples stored on a fine time grid.

    For an internal time ``tau`` the path picks a stored time and returns a uniformly drawn
    sample stored there: the nearest stored time (``"nearest"``), or, with ``λ`` the position
    of ``tau`` between the two bracketing stored times, the later one with probability ``λ``
    and the earlier one otherwise (``"bracket"``, a mixture that is linear in time).

    Parameters
    ----------
    data
        Samples on a time grid (:class:`~trajinfer.quantum.sampling.SnapshotSeries`).
    time_selection
        ``"nearest"`` or ``"bracket"``.
    """

    def __init__(self, data: SnapshotSeries, time_selection: str = "nearest"):
        if time_selection not in TIME_SELECTIONS:
            raise ValueError(f"Unknown time_selection {time_selection!r}; choose one of {TIME_SELECTIONS}.")
        if len(data.times) < 2:
            raise ValueError("A dataset path needs at least two stored times.")
        self.data = data
        self.time_selection = time_selection
        self.dim = data.dim
        self.t_range = (float(data.times[0]), float(data.times[-1]))
        self.device = torch.device("cpu")
        self._samples = data.samples
        span = data.times[-1] - data.times[0]
        self._taus = torch.as_tensor((data.times - data.times[0]) / span, dtype=torch.float32)

    def to(self, device: torch.device) -> DatasetPath:
        self.device = torch.device(device)
        self._samples = self._samples.to(self.device)
        self._taus = self._taus.to(self.device)
        return self

    @property
    def times(self) -> np.ndarray:
        """Stored times in the user's units, shape (T,)."""
        return self.data.times

    def time_index(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Index of the stored time used for each internal time in ``tau``."""
        tau = tau.to(self.device, torch.float32).clamp(0.0, 1.0).contiguous()
        upper = torch.searchsorted(self._taus, tau).clamp(1, len(self._taus) - 1)
        lower = upper - 1
        lam = (tau - self._taus[lower]) / (self._taus[upper] - self._taus[lower])
        if self.time_selection == "nearest":
            return torch.where(lam >= 0.5, upper, lower)
        u = torch.rand(tau.shape, generator=generator, device=self.device)
        return torch.where(u < lam, upper, lower)

    def sample(self, tau: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        k = self.time_index(tau, generator)
        n = self._samples.shape[1]
        j = torch.randint(n, k.shape, generator=generator, device=self.device)
        return self._samples[k, j].to(torch.float32)


class WavefunctionPath(DatasetPath):
    """The marginal path ``q_t = |ψ(·, t)|²`` of any wavefunction, sampled by Metropolis + Bohmian transport.

    Generates :func:`~trajinfer.quantum.sampling.generate_dataset` on ``n_steps + 1`` equally
    spaced times in ``t_range`` and serves it as a :class:`DatasetPath`.

    Parameters
    ----------
    wavefunction
        A :class:`~trajinfer.quantum.hydrogen.Wavefunction`, or a callable
        ``ψ(x: Tensor[B, dim], t: float | Tensor[B]) -> complex Tensor[B]`` written with
        differentiable PyTorch operations (wrapped in
        :class:`~trajinfer.quantum.hydrogen.CallableWavefunction`).
    t_range
        Start and end times (user units).
    n_steps
        Number of time intervals of the stored grid.
    n_samples
        Samples per stored time.
    dim
        Dimension of ``x`` when ``wavefunction`` is a plain callable.
    substeps
        ODE solver steps per interval of the grid.
    time_selection
        How a time is mapped to the grid (see :class:`DatasetPath`).
    seed
        Random seed of the dataset.
    metropolis_kwargs
        Options of :func:`~trajinfer.quantum.sampling.metropolis` (``init_scale``,
        ``step_size``, ``n_burnin``, ``thin``, ``n_chains``); set ``init_scale`` to the
        length scale of your density.
    progress
        Show progress bars while generating.
    """

    def __init__(
        self,
        wavefunction: Wavefunction | Callable[[torch.Tensor, float | torch.Tensor], torch.Tensor],
        t_range: tuple[float, float],
        *,
        n_steps: int = 1000,
        n_samples: int = 5000,
        dim: int = 3,
        substeps: int = 4,
        time_selection: str = "nearest",
        seed: SeedLike = 0,
        metropolis_kwargs: dict | None = None,
        progress: bool = False,
    ):
        if not isinstance(wavefunction, Wavefunction):
            wavefunction = CallableWavefunction(wavefunction, dim=dim)
        self.wavefunction = wavefunction
        data = generate_dataset(
            wavefunction, n_samples, t_range=t_range, n_steps=n_steps, substeps=substeps, seed=seed,
            metropolis_kwargs=metropolis_kwargs, progress=progress,
        )
        super().__init__(data, time_selection=time_selection)


class HydrogenPath(WavefunctionPath):
    """The paper's hydrogen dataset: ``|ψ(·, t)|²`` for a superposition of eigenstates.

    Defaults reproduce the paper: ``ψ ∝ ψ_{3,2,−1} + ψ_{2,1,0}``, ``T = 14,000``, 1000 steps
    (1001 stored times), 5000 samples per time.

    Parameters
    ----------
    states, coefficients
        Eigenstates and amplitudes (see :class:`~trajinfer.quantum.hydrogen.HydrogenSuperposition`).
    t_end
        Final time (the path starts at 0).
    n_steps, n_samples, substeps, time_selection, seed, progress
        As in :class:`WavefunctionPath`.
    metropolis_kwargs
        Options of the Metropolis sampler; by default chains start at the scale of the
        outermost shell, ``N(0, (n_max² a₀)²/3 · I)``.
    """

    def __init__(
        self,
        states: Sequence[Sequence[int]] = DEFAULT_STATES,
        coefficients: Sequence[complex] | None = None,
        *,
        t_end: float = 14_000.0,
        n_steps: int = 1000,
        n_samples: int = 5000,
        substeps: int = 4,
        time_selection: str = "nearest",
        seed: SeedLike = 0,
        metropolis_kwargs: dict | None = None,
        progress: bool = False,
    ):
        wavefunction = HydrogenSuperposition(states, coefficients)
        n_max = max(n for n, _, _ in wavefunction.states)
        options = {"init_scale": n_max**2 * BOHR_RADIUS / sqrt(3.0), "step_size": n_max * BOHR_RADIUS / 4.0}
        options.update(metropolis_kwargs or {})
        super().__init__(
            wavefunction, (0.0, float(t_end)), n_steps=n_steps, n_samples=n_samples, substeps=substeps,
            time_selection=time_selection, seed=seed, metropolis_kwargs=options, progress=progress,
        )
