"""Baselines trained on the same interpolant paths with the same networks (paper Sec. 4.3.1).

- :class:`FlowMatching`: regress a velocity network on the conditional velocity
  ``∂_tau interpolate(x_0, x_1, tau)`` (Lipman et al. 2023); unlike Action Matching it uses
  the pairing ``(x_0, x_1)`` that built each sample, i.e. knowledge of how the path was made.
- :class:`SlicedScoreMatching` + :func:`annealed_langevin_dynamics`: learn the scores
  ``∇ log q_tau`` of the marginals from samples alone (sliced score matching, Song et al. 2020)
  and sample by annealed Langevin dynamics over the noise levels of the path (Song & Ermon
  2019; paper Algorithm 4).

Both train with :class:`trajinfer.training.TrainingLoop`, the loop of
:class:`trajinfer.ActionMatching` (Adam, cosine decay of the learning rate to a hundredth,
gradient clipping, a warmed-up moving average of the weights, divergence rollback); each
supplies only its loss.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .._device import resolve_device
from .._progress import progress_bar
from .._random import SeedLike, as_int_seed, torch_generator
from ..training import OptimizerSettings, TrainingLoop
from .interpolants import InterpolantPath
from .metrics import Field

__all__ = ["FlowMatching", "SlicedScoreMatching", "annealed_langevin_dynamics", "conditional_velocity"]

logger = logging.getLogger(__name__)


class _Baseline:
    """A network trained on an interpolant path by :class:`~trajinfer.training.TrainingLoop`;
    subclasses define the loss of one minibatch (:meth:`_loss`)."""

    name = "baseline"

    def __init__(
        self,
        network: nn.Module,
        *,
        n_iter: int = 2000,
        batch_size: int = 128,
        lr: float = 1e-3,
        grad_clip: float | None = 1.0,
        ema_decay: float | None = 0.999,
        device: str | torch.device = "auto",
        seed: SeedLike = 0,
        progress: bool = True,
    ):
        if not (isinstance(n_iter, (int, np.integer)) and n_iter >= 1):
            raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}.")
        if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 2):
            raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}.")
        self.network = network
        self.n_iter, self.batch_size, self.lr = int(n_iter), int(batch_size), float(lr)
        self.grad_clip, self.ema_decay = grad_clip, ema_decay
        self.device, self.seed, self.progress = device, seed, progress

    def _loss(self, network: nn.Module, path: InterpolantPath, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, path: InterpolantPath) -> _Baseline:
        """Train a copy of ``network`` on samples of ``path``.

        The network given to the constructor is left as it is: every fit starts from its
        weights, so two fits with the same ``seed`` give the same network.

        Parameters
        ----------
        path
            The interpolant path; moved to the fit's device.

        Returns
        -------
        self
            With ``network_`` (the trained copy, moving-average weights), ``loss_curve_``,
            ``n_iter_``, ``device_`` and ``fit_time_`` (seconds).

        Raises
        ------
        trajinfer.training.DivergenceError
            When the loss or gradient diverged; the last healthy weights (moving average
            included) are restored into ``network_`` and ``loss_curve_`` ends before the failure.
        """
        device = resolve_device(self.device)
        path.to(device)
        generator = torch_generator(as_int_seed(self.seed), device)
        network = copy.deepcopy(self.network).to(device).train().requires_grad_(True)
        settings = OptimizerSettings(lr=self.lr, grad_clip=self.grad_clip, ema_decay=self.ema_decay)
        loop = TrainingLoop(network, settings, self.n_iter, progress=self.progress, desc=f"fit {self.name}")

        def step(it: int) -> torch.Tensor:
            loss = self._loss(network, path, generator)
            loss.backward()
            return loss.detach()

        try:
            elapsed = loop.run(step, hint=f"Lower the learning rate (lr={self.lr}).")
        finally:
            loop.finalize()
            self.network_ = network
            self.loss_curve_ = loop.losses
            self.n_iter_ = len(loop.losses)
            self.device_ = device
        self.fit_time_ = elapsed
        logger.info("Fitted %s in %.1f s (%d iterations, final loss %.4g).", self.name, elapsed, self.n_iter_, loop.losses[-1])
        return self


def conditional_velocity(
    path: InterpolantPath, x0: torch.Tensor, x1: torch.Tensor, tau: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_tau`` and its time derivative ``∂_tau interpolate(x0, x1, tau)``, each (n, d).

    Each row depends on its own ``tau``, so the derivative is the Jacobian-vector product with
    a vector of ones, obtained by differentiating a vector-Jacobian product (double backward).
    """
    with torch.enable_grad():
        tau = tau.detach().requires_grad_(True)
        xt = path.interpolate(x0, x1, tau)
        probe = torch.zeros_like(xt, requires_grad=True)
        vjp = torch.autograd.grad(xt, tau, grad_outputs=probe, create_graph=True)[0]
        velocity = torch.autograd.grad(vjp, probe, grad_outputs=torch.ones_like(vjp))[0]
    return xt.detach(), velocity.detach()


class FlowMatching(_Baseline):
    """Conditional flow matching on an interpolant path.

    Minimises ``E |v(x_tau, tau) − ∂_tau x_tau|²`` over ``tau ~ U[0, 1]`` and pairs
    ``(x_0, x_1)``, the time derivative taken through :meth:`InterpolantPath.interpolate` by
    automatic differentiation (:func:`conditional_velocity`). ``network(x, tau)`` maps (B, d)
    and (B,) to (B, d), e.g. :class:`~trajinfer.vision.unet.UNet`.

    Parameters
    ----------
    network
        Velocity network; :meth:`fit` trains a copy of it, ``network_``.
    n_iter, batch_size, lr, grad_clip, ema_decay, device, seed, progress
        As for :class:`trajinfer.ActionMatching`.
    """

    name = "flow matching"

    def _loss(self, network: nn.Module, path: InterpolantPath, generator: torch.Generator) -> torch.Tensor:
        tau = torch.rand(self.batch_size, generator=generator, device=path.device)
        x0, x1 = path.draw(self.batch_size, generator)
        xt, target = conditional_velocity(path, x0, x1, tau)
        return ((network(xt, tau) - target) ** 2).sum(dim=1).mean()

    def field(self) -> Field:
        """The fitted velocity ``v(x, tau)``."""
        network = self.network_
        return lambda x, tau: network(x, tau)


class SlicedScoreMatching(_Baseline):
    """Noise-conditional score model ``∇ log q_tau(x) ≈ network(x, tau) / b_tau`` by sliced score matching.

    The loss is the variance-reduced sliced objective ``vᵀ ∂_x(vᵀ s) + ½|s|²`` with Gaussian
    projections ``v``, weighted by ``b_tau²`` (the noise variance of the path, as in Song & Ermon
    2019), with ``tau ~ U[0, 1]``. Only samples of ``q_tau`` are used, never the pairs.

    Parameters
    ----------
    network
        Map (B, d), (B,) -> (B, d), e.g. :class:`~trajinfer.vision.unet.UNet`; :meth:`fit`
        trains a copy of it, ``network_``.
    n_projections
        Random projections per sample.
    min_noise
        Floor on ``b_tau`` in the score scaling (the data end has ``b = 0``).
    n_iter, batch_size, lr, grad_clip, ema_decay, device, seed, progress
        As for :class:`trajinfer.ActionMatching`.
    """

    name = "sliced score matching"

    def __init__(self, network: nn.Module, *, n_projections: int = 1, min_noise: float = 0.01, **kwargs):
        super().__init__(network, **kwargs)
        if n_projections < 1 or not min_noise > 0:
            raise ValueError("n_projections must be >= 1 and min_noise positive.")
        self.n_projections, self.min_noise = int(n_projections), float(min_noise)

    def _scale(self, path: InterpolantPath, tau: torch.Tensor) -> torch.Tensor:
        return path.noise_scale(tau).clamp_min(self.min_noise)

    def _loss(self, network: nn.Module, path: InterpolantPath, generator: torch.Generator) -> torch.Tensor:
        tau = torch.rand(self.batch_size, generator=generator, device=path.device)
        x = path.sample(tau, generator).requires_grad_(True)
        scale = self._scale(path, tau)[:, None]
        score = network(x, tau) / scale
        loss = 0.5 * (score**2).sum(dim=1)
        for _ in range(self.n_projections):
            v = torch.randn(x.shape, generator=generator, device=x.device)
            grad = torch.autograd.grad((score * v).sum(), x, create_graph=True)[0]
            loss = loss + (grad * v).sum(dim=1) / self.n_projections
        return (scale[:, 0] ** 2 * loss).mean()

    def score(self, path: InterpolantPath) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The fitted score ``(x, tau) -> ∇ log q_tau(x)`` for ``path``'s noise levels."""
        network = self.network_
        return lambda x, tau: network(x, tau) / self._scale(path, tau)[:, None]


@torch.no_grad()
def annealed_langevin_dynamics(
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    noise_scale: Callable[[torch.Tensor], torch.Tensor],
    *,
    n_levels: int = 100,
    steps_per_level: int = 10,
    final_steps: int = 100,
    step_size: float = 2e-5,
    min_noise: float = 0.01,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    progress: bool = False,
) -> torch.Tensor:
    """Annealed Langevin dynamics through the marginals ``q_tau`` (paper Algorithm 4).

    For ``tau_k = k / n_levels``, ``k = 0..n_levels-1``, run ``steps_per_level`` Langevin steps
    ``x += (α/2) score(x, tau_k) + sqrt(α) z`` with ``α = step_size · (b_k / b_min)²``, where
    ``b_k`` is the path's noise scale (floored at ``min_noise``) and ``b_min`` the smallest one
    used; then ``final_steps`` steps at ``tau = 1`` with ``α = step_size``.

    Returns
    -------
    torch.Tensor
        Samples (n, d) after ``n_levels · steps_per_level + final_steps`` score evaluations.
    """
    taus = torch.arange(n_levels, dtype=torch.float32) / n_levels
    scales = noise_scale(taus).clamp_min(min_noise)
    smallest = float(scales.min())
    schedule = [(float(t), step_size * (float(s) / smallest) ** 2, steps_per_level) for t, s in zip(taus, scales)]
    schedule.append((1.0, step_size, final_steps))
    out = []
    for lo in progress_bar(range(0, x0.shape[0], batch_size), show=progress, desc="langevin", leave=False):
        x = x0[lo : lo + batch_size].clone()
        for tau, alpha, n_steps in schedule:
            t = torch.full((x.shape[0],), tau, device=x.device)
            for _ in range(n_steps):
                noise = torch.randn(x.shape, generator=generator, device=x.device)
                x = x + 0.5 * alpha * score(x, t) + math.sqrt(alpha) * noise
        out.append(x)
    return torch.cat(out)
