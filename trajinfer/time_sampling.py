"""Proposals p(t) for the time integral of the loss (paper App. C, eq. 86–88).

The interior term is estimated as ``E_{t~p}[integrand(t) / p(t)]``, unbiased for every
proposal. :class:`AdaptiveTimeProposal` makes ``p(t)`` proportional to a running estimate of
the integrand's standard deviation on a grid of time bins, mixed with the uniform density so
that every time keeps a positive probability.
"""

from __future__ import annotations

import torch

from ._defaults import TIME_PROPOSALS

__all__ = ["AdaptiveTimeProposal", "QuasiUniformTimeProposal", "UniformTimeProposal", "make_time_proposal"]


class UniformTimeProposal:
    """``p(t) = 1`` on [0, 1]."""

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` times; return them with their densities."""
        tau = torch.rand(n, generator=generator, device=device)
        return tau, torch.ones_like(tau)

    def update(self, tau: torch.Tensor, integrand: torch.Tensor) -> None:
        """Uniform proposals do not adapt."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The adaptive state (none), for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a state returned by :meth:`state_dict`."""


class QuasiUniformTimeProposal(UniformTimeProposal):
    """Low-discrepancy times on [0, 1]: ``tau_k = (u + k·(√2 − 1)) mod 1`` with one uniform ``u``
    per batch (a randomly shifted Kronecker sequence, as in the Action Matching authors' code).

    Every time is still uniformly distributed (``p(t) = 1``, the estimate stays unbiased), but a
    batch covers [0, 1] evenly: the Monte Carlo error of the time integral falls like ``1/B``
    instead of ``1/√B`` for smooth integrands. Part of the loss's noise is the time integral of
    ``∂_t s``, which cancels the boundary terms only on average; an even cover of [0, 1] makes
    that cancellation nearly exact in every batch.
    """

    STEP = 2**0.5 - 1
    # like the uniform proposal it does not adapt: update and the (empty) state are inherited

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` times; return them with their densities."""
        shift = torch.rand(1, generator=generator, device=device, dtype=torch.float64)
        steps = torch.arange(n, device=device, dtype=torch.float64) * self.STEP
        tau = torch.remainder(shift + steps, 1.0).to(torch.float32)
        return tau, torch.ones_like(tau)


class AdaptiveTimeProposal:
    """Piecewise-constant ``p(t) ∝ (1 − mix)·std_bin + mix·mean(std)`` over ``n_bins`` bins.

    Parameters
    ----------
    n_bins
        Number of equal-width time bins.
    decay
        Exponential-moving-average factor for the per-bin first and second moments.
    uniform_mix
        Weight of the uniform density in the mixture (keeps ``p > 0`` everywhere).
    """

    def __init__(self, n_bins: int = 50, decay: float = 0.99, uniform_mix: float = 0.1):
        if n_bins < 1 or not 0 <= decay < 1 or not 0 < uniform_mix <= 1:
            raise ValueError("Need n_bins >= 1, 0 <= decay < 1 and 0 < uniform_mix <= 1.")
        self.n_bins, self.decay, self.uniform_mix = n_bins, decay, uniform_mix
        self.mean = torch.zeros(n_bins, dtype=torch.float64)
        self.second = torch.ones(n_bins, dtype=torch.float64)

    def probabilities(self) -> torch.Tensor:
        """Probability of each bin."""
        std = torch.sqrt(torch.clamp(self.second - self.mean**2, min=0.0)) + 1e-12
        return (1 - self.uniform_mix) * std / std.sum() + self.uniform_mix / self.n_bins

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self.probabilities().to(device=device, dtype=torch.float32)
        bins = torch.multinomial(probs, n, replacement=True, generator=generator)
        tau = (bins + torch.rand(n, generator=generator, device=device)) / self.n_bins
        return tau, probs[bins] * self.n_bins

    def update(self, tau: torch.Tensor, integrand: torch.Tensor) -> None:
        """Fold a batch of integrand values into the per-bin moments."""
        bins = torch.clamp((tau.detach().double().cpu() * self.n_bins).long(), 0, self.n_bins - 1)
        values = integrand.detach().double().cpu()
        counts = torch.bincount(bins, minlength=self.n_bins).double()
        seen = counts > 0
        sums = torch.bincount(bins, weights=values, minlength=self.n_bins)
        squares = torch.bincount(bins, weights=values**2, minlength=self.n_bins)
        self.mean[seen] = self.decay * self.mean[seen] + (1 - self.decay) * sums[seen] / counts[seen]
        self.second[seen] = self.decay * self.second[seen] + (1 - self.decay) * squares[seen] / counts[seen]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The per-bin moments, for checkpoints."""
        return {"mean": self.mean.clone(), "second": self.second.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the moments returned by :meth:`state_dict`."""
        self.mean.copy_(state["mean"])
        self.second.copy_(state["second"])


TimeProposal = UniformTimeProposal | QuasiUniformTimeProposal | AdaptiveTimeProposal


def make_time_proposal(name: str) -> TimeProposal:
    """The time proposal named ``"quasi-uniform"`` or ``"adaptive"``."""
    if name == "quasi-uniform":
        return QuasiUniformTimeProposal()
    if name == "adaptive":
        return AdaptiveTimeProposal()
    raise ValueError(f"Unknown time_proposal {name!r}; choose one of {TIME_PROPOSALS}.")
