"""Samples of ``|ψ(·, t)|²`` over time: Metropolis at the start, Bohmian transport afterwards.

The dataset of the paper's quantum experiment is built in three steps:

1. :func:`metropolis` draws samples of ``q_0 = |ψ(·, t_0)|²`` with a random-walk Metropolis
   sampler (parallel chains, burn-in with step-size adaptation, thinning).
2. :func:`bohmian_transport` moves each sample along ``dx/dt = v(x, t)`` with the Bohmian
   velocity ``v = ∇ arg ψ``. Because ``q_t`` solves the continuity equation with that
   velocity, samples of ``q_0`` become samples of ``q_t`` at every later time.
3. :func:`generate_dataset` stores the samples on a regular time grid and shuffles each time
   independently, so no trajectory (pairing across times) survives into training data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchdiffeq import odeint

from .._deprecation import UNSET, renamed_keyword
from .._progress import progress_bar
from .._random import SeedLike, torch_generator
from .hydrogen import Wavefunction

__all__ = ["SnapshotSeries", "bohmian_transport", "generate_dataset", "metropolis"]

logger = logging.getLogger(__name__)


def metropolis(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    n_samples: int,
    dim: int,
    *,
    n_chains: int | None = None,
    n_burnin: int = 2000,
    thin: int = 50,
    step_size: float = 10.0,
    init_scale: float = 50.0,
    target_acceptance: float = 0.35,
    seed: SeedLike = 0,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
) -> torch.Tensor:
    """Random-walk Metropolis sampling of an unnormalised density, with parallel chains.

    Chains start from ``N(0, init_scale² I)``. During burn-in the (shared) Gaussian proposal
    scale is adapted towards ``target_acceptance`` with a decaying Robbins–Monro step; it is
    frozen afterwards, so the kept samples come from a valid (non-adaptive) Markov chain.
    After burn-in every chain contributes one sample every ``thin`` steps.

    Parameters
    ----------
    log_density
        Batched ``log q(x)`` up to a constant: Tensor (B, dim) -> Tensor (B,); ``-inf`` allowed.
    n_samples
        Number of samples returned.
    dim
        Dimension of the state.
    n_chains
        Number of parallel chains; default ``min(n_samples, 10000)``. Samples from different
        chains are independent; those of one chain are only approximately so.
    n_burnin
        Steps discarded at the start of every chain.
    thin
        Steps between kept samples of a chain.
    step_size
        Initial standard deviation of the Gaussian proposal.
    init_scale
        Standard deviation of the chains' starting points.
    target_acceptance
        Acceptance rate the burn-in adaptation aims at.
    seed
        Random seed (int or ``numpy.random.Generator``).
    dtype
        Floating point type of the chains.
    progress
        Show a progress bar.

    Returns
    -------
    torch.Tensor
        Samples of shape (n_samples, dim), on the CPU.
    """
    if n_samples < 1 or dim < 1:
        raise ValueError(f"n_samples and dim must be positive, got {n_samples} and {dim}.")
    if n_burnin < 0 or thin < 1 or not step_size > 0 or not init_scale > 0:
        raise ValueError("Need n_burnin >= 0, thin >= 1, step_size > 0 and init_scale > 0.")
    if not 0.0 < target_acceptance < 1.0:
        raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}.")
    n_chains = min(n_samples, 10000) if n_chains is None else int(n_chains)
    if n_chains < 1:
        raise ValueError(f"n_chains must be positive, got {n_chains}.")
    per_chain = math.ceil(n_samples / n_chains)
    n_total = n_burnin + per_chain * thin
    generator = torch_generator(seed, torch.device("cpu"))

    x = init_scale * torch.randn(n_chains, dim, generator=generator, dtype=dtype)
    log_p = log_density(x)
    log_step = math.log(step_size)
    kept: list[torch.Tensor] = []
    n_accepted = torch.zeros((), dtype=dtype)
    for step in progress_bar(range(n_total), desc="Metropolis", show=progress, leave=False):
        proposal = x + math.exp(log_step) * torch.randn(n_chains, dim, generator=generator, dtype=dtype)
        log_p_new = log_density(proposal)
        log_u = torch.log(torch.rand(n_chains, generator=generator, dtype=dtype))
        accept = log_u < (log_p_new - log_p)
        x = torch.where(accept[:, None], proposal, x)
        log_p = torch.where(accept, log_p_new, log_p)
        rate = accept.to(dtype).mean()
        if step < n_burnin:
            log_step += (float(rate) - target_acceptance) / math.sqrt(1.0 + step / 10.0)
        else:
            n_accepted += rate
            if (step - n_burnin + 1) % thin == 0:
                kept.append(x.clone())
    samples = torch.stack(kept, dim=1).reshape(-1, dim)[:n_samples]
    logger.info(
        "Metropolis: %d chains, proposal scale %.3g, acceptance %.2f after burn-in.",
        n_chains, math.exp(log_step), float(n_accepted) / max(n_total - n_burnin, 1),
    )
    return samples


def bohmian_transport(
    wavefunction: Wavefunction,
    x0: torch.Tensor,
    times: np.ndarray,
    *,
    substeps: int = 4,
    solver: str = "rk4",
    batch_size: int = 20000,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
    method: Any = UNSET,
) -> torch.Tensor:
    """Move samples along the Bohmian velocity ``dx/dt = v(x, t)`` and record them at ``times``.

    Integrates with a fixed-step solver of :func:`torchdiffeq.odeint` (``substeps`` equal steps
    between consecutive output times).

    Parameters
    ----------
    wavefunction
        Provides ``velocity(x, t)``.
    x0
        Positions at ``times[0]``, shape (n, dim).
    times
        Increasing output times, shape (T,); ``times[0]`` is the time of ``x0``.
    substeps
        Solver steps per output interval.
    solver
        Fixed-grid torchdiffeq solver (``"rk4"``, ``"midpoint"``, ``"euler"``, ...).
    batch_size
        Particles integrated together (bounds memory).
    dtype
        Floating point type of the integration.
    progress
        Show a progress bar over output times.
    method
        Deprecated name of ``solver``.

    Returns
    -------
    torch.Tensor
        Positions of shape (T, n, dim), float32, on the CPU.
    """
    solver = renamed_keyword(solver, method, function="bohmian_transport", old="method", new="solver")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or len(times) < 1 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be a non-empty, strictly increasing 1-D array.")
    if substeps < 1:
        raise ValueError(f"substeps must be positive, got {substeps}.")
    x0 = torch.as_tensor(x0).to(dtype)
    out = torch.empty(len(times), *x0.shape, dtype=torch.float32)
    out[0] = x0.float()

    def rhs(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return wavefunction.velocity(x, float(t))

    state = x0.clone()
    for k in progress_bar(range(1, len(times)), desc="Bohmian transport", show=progress, leave=False):
        t_pair = torch.tensor(times[k - 1 : k + 1], dtype=dtype)
        step = float(times[k] - times[k - 1]) / substeps
        state = torch.cat([
            odeint(rhs, chunk, t_pair, method=solver, options={"step_size": step})[-1]
            for chunk in state.split(batch_size)
        ])
        out[k] = state.float()
    return out


@dataclass
class SnapshotSeries:
    """Independent samples of a marginal path on a time grid.

    Attributes
    ----------
    times
        Times in the user's units, shape (T,).
    samples
        Samples, float32 tensor of shape (T, n, dim); rows at different times are unrelated.
    """

    times: np.ndarray
    samples: torch.Tensor

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64)
        if self.samples.ndim != 3 or self.samples.shape[0] != len(self.times):
            raise ValueError(
                f"samples must have shape (T, n, dim) with T = {len(self.times)} times; "
                f"got {tuple(self.samples.shape)}."
            )

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def dim(self) -> int:
        return int(self.samples.shape[2])

    def index(self, t: float) -> int:
        """Index of the stored time nearest to ``t``."""
        return int(np.argmin(np.abs(self.times - t)))

    def at(self, t: float) -> np.ndarray:
        """Samples at the stored time nearest to ``t``, shape (n, dim)."""
        return self.samples[self.index(t)].numpy()


def generate_dataset(
    wavefunction: Wavefunction,
    n_samples: int = 5000,
    *,
    t_range: tuple[float, float] = (0.0, 14_000.0),
    n_steps: int = 1000,
    substeps: int = 4,
    shuffle: bool = True,
    seed: SeedLike = 0,
    metropolis_kwargs: dict | None = None,
    progress: bool = False,
) -> SnapshotSeries:
    """Samples of ``|ψ(·, t)|²`` at ``n_steps + 1`` equally spaced times.

    Metropolis sampling at ``t_range[0]`` (see :func:`metropolis`), Bohmian transport to every
    later time (see :func:`bohmian_transport`), then an independent random permutation of the
    samples at each time, so that no trajectory can be read off the dataset.

    Parameters
    ----------
    wavefunction
        The wavefunction ``ψ(x, t)``.
    n_samples
        Samples per time.
    t_range
        Start and end times.
    n_steps
        Number of time intervals (the grid has ``n_steps + 1`` times).
    substeps
        Solver steps per interval.
    shuffle
        Permute the samples independently at each time.
    seed
        Random seed.
    metropolis_kwargs
        Extra keyword arguments for :func:`metropolis` (e.g. ``init_scale``, ``n_burnin``).
    progress
        Show progress bars.
    """
    t0, t1 = float(t_range[0]), float(t_range[1])
    if not t1 > t0:
        raise ValueError(f"t_range must be increasing, got {t_range}.")
    if n_steps < 1:
        raise ValueError(f"n_steps must be positive, got {n_steps}.")
    rng = np.random.default_rng(seed)
    x0 = metropolis(
        lambda x: wavefunction.log_density(x, t0), n_samples, wavefunction.dim,
        seed=rng, progress=progress, **(metropolis_kwargs or {}),
    )
    times = np.linspace(t0, t1, n_steps + 1)
    samples = bohmian_transport(wavefunction, x0, times, substeps=substeps, progress=progress)
    if shuffle:
        generator = torch_generator(rng, torch.device("cpu"))
        for k in range(len(times)):
            samples[k] = samples[k, torch.randperm(n_samples, generator=generator)]
    return SnapshotSeries(times=times, samples=samples)
