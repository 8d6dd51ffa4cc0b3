"""Score-based baselines: score networks fitted by (sliced) score matching and annealed Langevin dynamics.

A score network ``s(x, t) ≈ ∇ log q_t(x)`` is fitted on the same marginal path as Action
Matching, then annealed Langevin dynamics (ALD, Algorithm 3 of the paper, after Song & Ermon,
2019) tracks the marginals: starting from samples of ``q_{t_0}``, at every time step ``t_k`` it
runs ``M`` unadjusted Langevin steps ``x ← x + (δ/2) s(x, t_k) + √δ ε`` targeting ``q_{t_k}``.
ALD only sees marginal scores, never the dynamics, so it lags behind a fast-moving density.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._device import resolve_device
from .._progress import progress_bar
from .._random import SeedLike, as_int_seed, torch_generator
from ..networks import StandardizedInput, TimeFeatures, make_mlp
from ..paths import MarginalPath
from ..training import OptimizerSettings, TrainingLoop
from ..trajectories import Trajectories
from .hydrogen import Wavefunction

__all__ = [
    "SCORE_METHODS", "ScoreFn", "ScoreModel", "ScoreNetwork", "annealed_langevin", "fit_score_model",
    "score_matching_loss", "true_score",
]

logger = logging.getLogger(__name__)

SCORE_METHODS = ("sm", "ssm")
ScoreFn = Callable[[torch.Tensor, float], torch.Tensor]


class ScoreNetwork(StandardizedInput):
    """Time-dependent vector field ``s(x, tau)`` (B, d) -> (B, d), an MLP on ``[x, time features]``.

    Inputs are standardised by the buffers ``shift`` and ``scale`` and the output is divided by
    ``scale``, so that an O(1) network output is a score of the data's natural size.

    Parameters
    ----------
    dim
        Dimension of ``x``.
    hidden_dims
        Widths of the hidden layers.
    activation
        Activation name (see :func:`trajinfer.networks.make_activation`).
    n_time_frequencies
        Sine/cosine pairs of the time embedding.
    """

    def __init__(
        self, dim: int, hidden_dims: Sequence[int] = (256,) * 5, activation: str = "silu", n_time_frequencies: int = 4
    ):
        super().__init__(dim)
        self.time_features = TimeFeatures(n_time_frequencies)
        self.net = make_mlp(dim + self.time_features.out_features, hidden_dims, activation, dim)

    def forward(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.standardize(x), self.time_features(tau)], dim=1)) / self.scale


def score_matching_loss(
    network: nn.Module, x: torch.Tensor, tau: torch.Tensor, method: str = "sm", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-sample score matching objective (its expectation is ``½E|s − ∇log q|²`` + const).

    ``"sm"`` (Hyvärinen, 2005): ``½|s|² + tr ∇s`` with the exact trace (one backward pass per
    dimension). ``"ssm"`` (sliced score matching, variance-reduced form of Song et al., 2020):
    ``½|s|² + vᵀ∇(vᵀs)`` with a Gaussian projection ``v``.
    """
    if method not in SCORE_METHODS:
        raise ValueError(f"Unknown score matching method {method!r}; choose one of {SCORE_METHODS}.")
    x = x.detach().requires_grad_(True)
    s = network(x, tau)
    if method == "sm":
        trace = sum(
            torch.autograd.grad(s[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1])
        )
    else:
        v = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        trace = (torch.autograd.grad((s * v).sum(), x, create_graph=True)[0] * v).sum(dim=1)
    return 0.5 * (s**2).sum(dim=1) + trace


class ScoreModel:
    """A fitted time-dependent score ``∇ log q_t`` in the user's time units.

    Attributes
    ----------
    network : ScoreNetwork
        Moving-average weights, in internal time ``tau`` in [0, 1].
    t_range : tuple of float
        Time interval of the path it was fitted on.
    method : str
        ``"sm"`` or ``"ssm"``.
    loss_curve : ndarray
        Training loss per iteration.
    fit_time : float
        Training wall-clock seconds.
    """

    def __init__(
        self, network: ScoreNetwork, t_range: tuple[float, float], method: str, loss_curve: np.ndarray, fit_time: float
    ):
        self.network = network
        self.t_range = t_range
        self.method = method
        self.loss_curve = loss_curve
        self.fit_time = fit_time

    @property
    def device(self) -> torch.device:
        return self.network.shift.device

    @torch.no_grad()
    def score(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Estimated ``∇ log q_t(x)`` at user time ``t`` for points (B, d); float32 on the model's device."""
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        tau = (float(t) - self.t_range[0]) / (self.t_range[1] - self.t_range[0])
        return self.network(x, torch.full((x.shape[0],), tau, device=self.device))


def fit_score_model(
    path: MarginalPath,
    method: str = "sm",
    *,
    hidden_dims: Sequence[int] = (256,) * 5,
    activation: str = "silu",
    n_iter: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    grad_clip: float | None = 1.0,
    ema_decay: float | None = 0.999,
    device: str | torch.device = "auto",
    seed: SeedLike = 0,
    progress: bool = True,
) -> ScoreModel:
    """Fit a time-dependent score network on a marginal path by (sliced) score matching.

    Internal times are uniform in [0, 1], one sample of ``q_tau`` per time; the optimisation is
    :class:`trajinfer.training.TrainingLoop`, the loop of :class:`trajinfer.ActionMatching`
    (Adam, cosine decay of the learning rate to a hundredth, gradient clipping, a warmed-up
    moving average of the weights, divergence rollback).

    Parameters
    ----------
    path
        The marginal path (e.g. :class:`~trajinfer.quantum.paths.HydrogenPath`).
    method
        ``"sm"`` (exact score matching) or ``"ssm"`` (sliced score matching).
    hidden_dims, activation
        Architecture of the :class:`ScoreNetwork`.
    n_iter, batch_size, lr, grad_clip, ema_decay
        Optimisation settings.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    seed
        Seed of the initial weights, the times and the samples; torch's global random state is
        left as the caller had it.
    progress
        Show a progress bar.

    Returns
    -------
    ScoreModel
        The fitted score with its loss curve and training time.

    Raises
    ------
    trajinfer.training.DivergenceError
        When the loss or gradient diverged (the fit is stopped; lower ``lr``).
    """
    if method not in SCORE_METHODS:
        raise ValueError(f"Unknown score matching method {method!r}; choose one of {SCORE_METHODS}.")
    if n_iter < 1 or batch_size < 2:
        raise ValueError("n_iter must be positive and batch_size at least 2.")
    device = resolve_device(device)
    path.to(device)
    int_seed = as_int_seed(seed)
    generator = torch_generator(int_seed, device)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights; the caller's CPU random state is restored
        torch.random.default_generator.manual_seed(int_seed)
        network = ScoreNetwork(path.dim, hidden_dims, activation)
    network = network.to(device)
    probe = path.sample(torch.rand(4096, generator=generator, device=device), generator)
    network.set_input_normalization(probe.mean(dim=0), probe.std(dim=0))
    settings = OptimizerSettings(lr=lr, grad_clip=grad_clip, ema_decay=ema_decay)
    loop = TrainingLoop(network, settings, n_iter, progress=progress, desc=f"score matching ({method})")

    def step(it: int) -> torch.Tensor:
        tau = torch.rand(batch_size, generator=generator, device=device)
        loss = score_matching_loss(network, path.sample(tau, generator), tau, method, generator).mean()
        loss.backward()
        return loss.detach()

    try:
        fit_time = loop.run(step, hint=f"Lower the learning rate (lr={lr}).")
    finally:
        loop.finalize()
    logger.info("Score matching (%s): %d iterations in %.1f s, final loss %.4g.", method, n_iter, fit_time, loop.losses[-1])
    return ScoreModel(network, path.t_range, method, loop.losses, fit_time)


def true_score(wavefunction: Wavefunction) -> ScoreFn:
    """The exact score ``∇ log |ψ(x, t)|²`` as a score function for :func:`annealed_langevin`."""

    def score(x: torch.Tensor, t: float) -> torch.Tensor:
        return wavefunction.score(x.to(torch.float64), t).to(x.dtype)

    return score


@torch.no_grad()
def annealed_langevin(
    score: ScoreFn,
    x0: torch.Tensor | np.ndarray,
    times: np.ndarray,
    *,
    step_size: float,
    n_inner: int = 5,
    record_times: Sequence[float] | None = None,
    seed: SeedLike = 0,
    progress: bool = False,
) -> Trajectories:
    """Annealed Langevin dynamics through a sequence of marginals (Algorithm 3 of the paper).

    For each time ``t_k = times[k]``, ``k ≥ 1``, run ``n_inner`` steps
    ``x ← x + (δ/2) score(x, t_k) + √δ ε``, ``ε ~ N(0, I)``, starting from ``x0`` at ``times[0]``.

    Parameters
    ----------
    score
        ``score(x: Tensor[B, d], t: float) -> Tensor[B, d]`` in the user's time units.
    x0
        Samples of the first marginal, shape (n, d).
    times
        Increasing time grid (user units).
    step_size
        Langevin step ``δ``.
    n_inner
        Langevin steps per time (``M``).
    record_times
        Times at which positions are kept (the nearest grid times); default all of ``times``.
    seed
        Random seed of the noise.
    progress
        Show a progress bar.

    Returns
    -------
    Trajectories
        Positions at the recorded times (zero log-weights).
    """
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or len(times) < 2 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be a strictly increasing 1-D array with at least two entries.")
    if not step_size > 0 or n_inner < 1:
        raise ValueError("step_size must be positive and n_inner at least 1.")
    x = torch.as_tensor(x0, dtype=torch.float32).clone()
    if record_times is None:
        record = set(range(len(times)))
    else:
        record = {int(np.argmin(np.abs(times - t))) for t in record_times}
    generator = torch_generator(seed, x.device)
    noise_scale = math.sqrt(step_size)
    kept_times, kept = [], []
    if 0 in record:
        kept_times.append(times[0])
        kept.append(x.cpu().numpy().copy())
    for k in progress_bar(range(1, len(times)), desc="annealed Langevin", show=progress, leave=False):
        for _ in range(n_inner):
            drift = score(x, float(times[k])).to(x.device)
            x = x + 0.5 * step_size * drift + noise_scale * torch.randn(x.shape, generator=generator, device=x.device)
        if k in record:
            kept_times.append(times[k])
            kept.append(x.cpu().numpy().copy())
    X = np.stack(kept)
    return Trajectories(times=np.asarray(kept_times), X=X, log_weights=np.zeros(X.shape[:2]))
