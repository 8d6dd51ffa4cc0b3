"""The Action Matching objectives (paper Thm 2.2, Prop. 3.2, Prop. 3.4, Sec. 3.3, App. C).

In internal time tau in [0, 1], with ω(tau) a weighting (default 1), p(tau) the time proposal
and m(tau) the total mass of the path (1 unless unbalanced):

    L = ω(0) m(0) E_{q_0}[s_0] − ω(1) m(1) E_{q_1}[s_1]
        + E_{tau~p} E_{x~q_tau} m(tau)/p(tau) · [ ω (c*(∇s) + ∂_tau s + σ²/2 Δs + ½ s²) + s ∂_tau ω ]

where the Laplacian term is present for the entropic methods (eam, ueam) and the ½ s² term
for the unbalanced methods (uam, ueam). With ω ≡ 1 the last term vanishes.

Unbalanced methods with a length scale ``δ`` (``growth_scale``) replace ½ s² by s²/(2δ²): the
dynamics are then ``dx = ∇s dt``, ``d log w = s/δ² dt``, the Wasserstein–Fisher–Rao geometry
with transport preferred over distances below about δ (the paper's uAM is δ = 1, in the units
of x). Substituting ``s = δ² g`` shows the loss is the same problem in rescaled units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .costs import KineticCost
from .derivatives import PotentialDerivatives, autograd_derivatives, potential_derivatives
from .paths import MarginalPath
from .time_sampling import TimeProposal

__all__ = ["ActionMatchingLoss", "LossTerms", "action_matching_loss", "is_entropic", "is_unbalanced"]


def is_entropic(method: str) -> bool:
    """Whether ``method`` has a diffusion term (``eam``, ``ueam``)."""
    return method in ("eam", "ueam")


def is_unbalanced(method: str) -> bool:
    """Whether ``method`` has growth and death (``uam``, ``ueam``)."""
    return method in ("uam", "ueam")


@dataclass
class LossTerms:
    """One minibatch estimate of the loss and the per-sample interior integrand."""

    loss: torch.Tensor
    tau: torch.Tensor
    integrand: torch.Tensor


def action_matching_loss(
    potential: nn.Module,
    path: MarginalPath,
    *,
    method: str,
    cost: KineticCost,
    batch_size: int,
    proposal: TimeProposal,
    diffusion_sq: Callable[[torch.Tensor], torch.Tensor] | None = None,
    time_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
    laplacian: str = "exact",
    n_probes: int = 1,
    growth_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> LossTerms:
    """Minibatch estimate of the (weighted) Action Matching loss.

    Parameters
    ----------
    potential
        The network ``s(x, tau)``.
    path
        The marginal path to sample.
    method
        ``"am"``, ``"eam"``, ``"uam"`` or ``"ueam"``.
    cost
        Kinetic cost; the loss uses its conjugate ``c*(∇s)``.
    batch_size
        Samples for each of the three expectations.
    proposal
        Time proposal ``p(tau)``.
    diffusion_sq
        ``σ²(tau)`` in internal time units (entropic methods).
    time_weight
        ``ω(tau)`` built from torch operations (its derivative is taken by autograd).
    laplacian, n_probes
        Laplacian estimator for the entropic term.
    growth_scale
        Length scale ``δ`` of the unbalanced methods, in units of ``x``: the growth rate is
        ``s / δ²`` and the growth term of the loss ``s² / (2δ²)`` (the paper's uAM is δ = 1).
    generator
        Random generator for samples and probes.
    """
    device = path.device
    zeros = torch.zeros(batch_size, device=device)
    ones = torch.ones(batch_size, device=device)
    tau, density = proposal.sample(batch_size, generator, device)
    x0, x1, xt = path.sample_triplet(tau, generator)

    derivs = potential_derivatives(
        potential, xt, tau, time_derivative=True, laplacian=laplacian if is_entropic(method) else None,
        n_probes=n_probes, generator=generator,
    )
    interior = _interior(derivs, tau, method=method, cost=cost, diffusion_sq=diffusion_sq, growth_scale=growth_scale)

    if time_weight is None:
        w0 = w1 = 1.0
        integrand = interior
    else:
        with torch.enable_grad():
            tau_w = tau.detach().requires_grad_(True)
            omega = time_weight(tau_w)
            d_omega = torch.autograd.grad(omega.sum(), tau_w)[0]
        integrand = omega.detach() * interior + derivs.value * d_omega
        w0 = time_weight(zeros[:1]).reshape(()).item()
        w1 = time_weight(ones[:1]).reshape(()).item()

    if is_unbalanced(method):
        integrand = integrand * path.mass(tau)
        m0, m1 = path.mass(zeros[:1]).item(), path.mass(ones[:1]).item()
    else:
        m0 = m1 = 1.0

    # boundary terms with a zero weight (ω(1) = 0 of the image paths) are not evaluated
    ends = [(x, t, c) for x, t, c in ((x0, zeros, w0 * m0), (x1, ones, -w1 * m1)) if c != 0]
    boundary = torch.zeros((), device=device)
    if ends:
        values = potential(torch.cat([x for x, _, _ in ends]), torch.cat([t for _, t, _ in ends])).split(int(batch_size))
        boundary = sum(c * v.mean() for (_, _, c), v in zip(ends, values))
    loss = boundary + (integrand / density).mean()
    return LossTerms(loss=loss, tau=tau, integrand=integrand.detach())


def _interior(
    derivs: PotentialDerivatives, tau: torch.Tensor, *, method: str, cost: KineticCost,
    diffusion_sq: Callable[[torch.Tensor], torch.Tensor] | None, growth_scale: float,
) -> torch.Tensor:
    """``c*(∇s) + ∂_tau s`` (+ ``σ²/2 Δs`` when entropic, + ``s²/(2δ²)`` when unbalanced), per sample."""
    interior = cost.conjugate(derivs.grad) + derivs.time_derivative
    if is_entropic(method):
        interior = interior + 0.5 * diffusion_sq(tau) * derivs.laplacian
    if is_unbalanced(method):
        interior = interior + 0.5 * derivs.value**2 / growth_scale**2
    return interior


@dataclass(frozen=True)
class ActionMatchingLoss:
    """The loss of one problem, its settings bound: call it on a potential and a path.

    :meth:`trajinfer.Dynamics.loss` builds it in internal time; training and
    :meth:`~trajinfer.Dynamics.score` both evaluate it. Parameters are those of
    :func:`action_matching_loss`.
    """

    method: str
    cost: KineticCost
    diffusion_sq: Callable[[torch.Tensor], torch.Tensor] | None = None
    time_weight: Callable[[torch.Tensor], torch.Tensor] | None = None
    laplacian: str = "exact"
    n_probes: int = 1
    growth_scale: float = 1.0

    def __call__(
        self, potential: nn.Module, path: MarginalPath, *, batch_size: int, proposal: TimeProposal,
        generator: torch.Generator | None = None,
    ) -> LossTerms:
        """Minibatch estimate of the loss of ``potential`` on ``path`` (:func:`action_matching_loss`)."""
        return action_matching_loss(
            potential, path, method=self.method, cost=self.cost, batch_size=batch_size, proposal=proposal,
            diffusion_sq=self.diffusion_sq, time_weight=self.time_weight, laplacian=self.laplacian,
            n_probes=self.n_probes, growth_scale=self.growth_scale, generator=generator,
        )

    def path_objective(
        self, potential: nn.Module, path: MarginalPath, *, batch_size: int, proposal: TimeProposal,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """What a learned path minimises against ``potential``: minus the interior term of the
        loss, ``−E_tau E_{x~q_tau} m(tau)/p(tau) · interior``, with the graph to the path's
        parameters (``path`` must have ``sample_differentiable``).

        For an action that minimises the loss on the path this is the path's kinetic energy
        (with the diffusion's and growth's terms) less the boundary terms, which do not depend
        on the path.
        """
        if self.time_weight is not None:
            raise ValueError("A learned path is trained without a time weighting (time_weight=None).")
        tau, density = proposal.sample(batch_size, generator, path.device)
        xt = path.sample_differentiable(tau, generator)
        derivs = autograd_derivatives(
            potential, xt, tau, time_derivative=True, laplacian=self.laplacian if is_entropic(self.method) else None,
            n_probes=self.n_probes, generator=generator, through_inputs=True,
        )
        interior = _interior(
            derivs, tau, method=self.method, cost=self.cost, diffusion_sq=self.diffusion_sq, growth_scale=self.growth_scale,
        )
        if is_unbalanced(self.method):
            interior = interior * path.mass(tau)
        return -(interior / density).mean()
