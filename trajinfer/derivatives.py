"""Derivatives of a potential ``s(x, t)``: value, spatial gradient, time derivative and Laplacian.

The Laplacian is exact (the trace of the Hessian, computed with one batched backward pass over
the ``d`` basis vectors) or a Hutchinson estimate ``E[εᵀ H ε]`` with Rademacher probes ``ε``.
Both are differentiable with respect to the network parameters (``create_graph=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ._defaults import LAPLACIANS as LAPLACIAN_CHOICES

__all__ = [
    "EXACT_LAPLACIAN_MAX_DIM", "PotentialDerivatives", "autograd_derivatives", "exact_laplacian",
    "hutchinson_laplacian", "potential_derivatives", "rademacher_probes", "resolve_laplacian",
]

#: Largest dimension in which ``laplacian="auto"`` is exact, by use. In a training step the exact
#: Laplacian (forward-mode jet) costs about d + 2 forward passes and one Hutchinson probe about
#: four (``MLPPotential.probed_derivatives``): in 2 dimensions the two cost about the same, so the
#: exact value is kept; from 3 dimensions on the probe is cheaper, and its noise averages out over
#: the fit (the Laplacian term carries a small part of the gradient's noise). An evaluated
#: quantity (a likelihood) has no such averaging, so it stays exact up to 16 dimensions.
EXACT_LAPLACIAN_MAX_DIM = {"training": 2, "evaluation": 16}


@dataclass
class PotentialDerivatives:
    """Values of ``s`` and its derivatives on a batch (each row one sample)."""

    value: torch.Tensor  # (B,)
    grad: torch.Tensor  # (B, d)
    time_derivative: torch.Tensor | None  # (B,)
    laplacian: torch.Tensor | None  # (B,)


def resolve_laplacian(laplacian: str, dim: int, *, use: Literal["training", "evaluation"]) -> str:
    """The Laplacian estimator to use: ``"auto"`` becomes ``"exact"`` up to
    ``EXACT_LAPLACIAN_MAX_DIM[use]`` dimensions and ``"hutchinson"`` above.

    Parameters
    ----------
    laplacian
        ``"auto"``, ``"exact"`` or ``"hutchinson"``.
    dim
        Dimension of ``x``.
    use
        ``"training"`` (noise averages out over the fit) or ``"evaluation"``.

    Returns
    -------
    str
        ``"exact"`` or ``"hutchinson"``.
    """
    if laplacian not in LAPLACIAN_CHOICES:
        raise ValueError(f"Unknown laplacian {laplacian!r}; choose one of {LAPLACIAN_CHOICES}.")
    if laplacian == "auto":
        return "exact" if dim <= EXACT_LAPLACIAN_MAX_DIM[use] else "hutchinson"
    return laplacian


def exact_laplacian(grad: torch.Tensor, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """Trace of the Hessian from ``grad = ∇s(x)`` (which must carry a graph to ``x``)."""
    dim = x.shape[1]
    basis = torch.eye(dim, device=x.device, dtype=x.dtype)[:, None, :].expand(dim, *grad.shape)
    try:
        rows = torch.autograd.grad(grad, x, grad_outputs=basis, create_graph=create_graph, is_grads_batched=True)[0]
        return torch.diagonal(rows, dim1=0, dim2=2).sum(dim=-1)
    except RuntimeError:  # an op without a batching rule: fall back to one backward pass per axis
        diag = [
            torch.autograd.grad(grad[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[0][:, i]
            for i in range(dim)
        ]
        return torch.stack(diag, dim=1).sum(dim=1)


def rademacher_probes(n_probes: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_probes`` Rademacher directions (entries ±1) for each row of ``x``, of shape ``(n_probes, *x.shape)``."""
    if n_probes < 1:
        raise ValueError(f"n_probes must be at least 1, got {n_probes}.")
    return torch.randint(0, 2, (n_probes, *x.shape), generator=generator, device=x.device).to(x.dtype) * 2 - 1


def hutchinson_laplacian(
    grad: torch.Tensor, x: torch.Tensor, n_probes: int = 1, generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> torch.Tensor:
    """Unbiased Hutchinson estimate ``mean_k ε_kᵀ H ε_k`` with Rademacher probes ``ε_k``."""
    probes = rademacher_probes(n_probes, x, generator)
    if n_probes == 1:  # one plain backward pass: batching a single probe (vmap) only adds overhead
        hvp = torch.autograd.grad(grad, x, grad_outputs=probes[0], create_graph=create_graph)[0]
        return (hvp * probes[0]).sum(dim=-1)
    hvp = torch.autograd.grad(grad, x, grad_outputs=probes, create_graph=create_graph, is_grads_batched=True)[0]
    return (hvp * probes).sum(dim=-1).mean(dim=0)


def potential_derivatives(
    potential: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    time_derivative: bool = True,
    laplacian: str | None = None,
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
) -> PotentialDerivatives:
    """Evaluate ``s``, ``∇s``, optionally ``∂s/∂t`` and ``Δs`` at ``(x, t)``.

    Parameters
    ----------
    potential
        Module mapping ``(x (B, d), t (B,))`` to ``(B,)``.
    x, t
        Points and times (internal time in [0, 1]).
    time_derivative
        Whether to return ``∂s/∂t``.
    laplacian
        ``None`` (skip), ``"exact"`` or ``"hutchinson"``.
    n_probes
        Number of Rademacher probes for ``"hutchinson"``.
    generator
        Random generator for the probes.
    create_graph
        Keep the graph so the outputs can be differentiated again (training needs it).

    Notes
    -----
    Built-in MLP potentials with an exact Laplacian use their forward-mode
    :meth:`~trajinfer.networks.MLPPotential.jet`, and with Hutchinson's estimate their
    :meth:`~trajinfer.networks.MLPPotential.probed_derivatives` (the same numbers as nested
    autograd with the same probes, in first-order operations, so a training step is cheaper);
    everything else uses reverse-mode autograd, which is cheaper when no Laplacian is
    needed.
    """
    if laplacian == "exact" and getattr(potential, "supports_jet", False):
        with torch.set_grad_enabled(create_graph):
            value, grad_x, grad_t, lap = potential.jet(x, t, laplacian=True)
    elif laplacian == "hutchinson" and getattr(potential, "supports_probed_derivatives", False):
        probes = rademacher_probes(n_probes, x, generator)
        with torch.set_grad_enabled(create_graph):
            value, grad_x, grad_t, lap = potential.probed_derivatives(x, t, probes)
    else:
        return autograd_derivatives(
            potential, x, t, time_derivative=time_derivative, laplacian=laplacian, n_probes=n_probes,
            generator=generator, create_graph=create_graph,
        )
    return PotentialDerivatives(value=value, grad=grad_x, time_derivative=grad_t if time_derivative else None, laplacian=lap)


def autograd_derivatives(
    potential: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    *,
    time_derivative: bool = True,
    laplacian: str | None = None,
    n_probes: int = 1,
    generator: torch.Generator | None = None,
    create_graph: bool = True,
    through_inputs: bool = False,
) -> PotentialDerivatives:
    """:func:`potential_derivatives` by nested reverse-mode autograd (any module).

    With ``through_inputs`` an ``x`` that carries a graph keeps it, so the outputs can be
    differentiated with respect to whatever produced ``x`` (a learned path's parameters).
    """
    with torch.enable_grad():
        x = x if through_inputs and x.requires_grad else x.detach().requires_grad_(True)
        t = t.detach().requires_grad_(time_derivative)
        value = potential(x, t)
        inputs = (x, t) if time_derivative else (x,)
        # the gradient's own graph is needed only to differentiate it again (a Laplacian, training)
        grads = torch.autograd.grad(value.sum(), inputs, create_graph=create_graph or laplacian is not None)
        grad_x = grads[0]
        grad_t = grads[1] if time_derivative else None
        lap = None
        if laplacian == "exact":
            lap = exact_laplacian(grad_x, x, create_graph=create_graph)
        elif laplacian == "hutchinson":
            lap = hutchinson_laplacian(grad_x, x, n_probes=n_probes, generator=generator, create_graph=create_graph)
        elif laplacian is not None:
            raise ValueError(f"laplacian must be None, 'exact' or 'hutchinson', got {laplacian!r}.")
    if not create_graph:
        value, grad_x = value.detach(), grad_x.detach()
        grad_t = grad_t.detach() if grad_t is not None else None
        lap = lap.detach() if lap is not None else None
    return PotentialDerivatives(value=value, grad=grad_x, time_derivative=grad_t, laplacian=lap)
