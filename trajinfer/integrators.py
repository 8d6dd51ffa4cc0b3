"""Integrators in internal time: ODE (torchdiffeq), Euler–Maruyama SDE, weight and log-density
tracking. The estimator wraps them in the user's units."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["ADAPTIVE_METHODS", "FIXED_STEP_METHODS", "integrate_ode", "integrate_sde"]

FIXED_STEP_METHODS = ("euler", "midpoint", "rk4")
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "adaptive_heun")

# field(x, tau) -> (velocity (n, d), extra (n,) or None), both in internal units
Field = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def integrate_ode(
    field: Field,
    x0: torch.Tensor,
    taus: torch.Tensor,
    *,
    track_extra: bool,
    method: str = "euler",
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate ``dx/dtau = v(x, tau)`` and, if ``track_extra``, ``dy/dtau = e(x, tau)``.

    Parameters
    ----------
    field
        Returns the velocity and the extra rate (growth or negative divergence) at ``(x, tau)``.
    x0
        Start positions (n, d) at ``taus[0]``.
    taus
        Output times, monotone (increasing integrates forward, decreasing backward).
    track_extra
        Whether to integrate the scalar ``extra`` alongside the positions.
    method
        A torchdiffeq method: fixed-step (``euler``, ``midpoint``, ``rk4``: one step per output
        interval) or adaptive (``dopri5``, ...).
    rtol, atol
        Tolerances of adaptive methods.

    Returns
    -------
    X, extra
        Positions (T, n, d) and the integrated extra (T, n) (zeros when not tracked).
    """
    # imported where used: torchdiffeq loads scipy.integrate (about 0.4 s)
    from torchdiffeq import odeint

    if method not in FIXED_STEP_METHODS + ADAPTIVE_METHODS:
        raise ValueError(f"Unknown ODE solver {method!r}; choose from {FIXED_STEP_METHODS + ADAPTIVE_METHODS}.")
    n, d = x0.shape

    def rhs(tau: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        x = state[:, :d]
        velocity, extra = field(x, tau.expand(n))
        if not track_extra:
            return velocity
        return torch.cat([velocity, extra[:, None]], dim=1)

    state0 = torch.cat([x0, torch.zeros(n, 1, device=x0.device, dtype=x0.dtype)], dim=1) if track_extra else x0
    kwargs = {"rtol": rtol, "atol": atol} if method in ADAPTIVE_METHODS else {}
    states = odeint(rhs, state0, taus, method=method, **kwargs)
    X = states[..., :d]
    extra = states[..., d] if track_extra else torch.zeros(states.shape[:2], device=x0.device, dtype=x0.dtype)
    return X, extra


def integrate_sde(
    field: Field,
    x0: torch.Tensor,
    taus: torch.Tensor,
    *,
    diffusion: Callable[[torch.Tensor], torch.Tensor],
    track_extra: bool,
    generator: torch.Generator | None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler–Maruyama for ``dx = v dtau + σ(tau) dW`` on the increasing grid ``taus``.

    ``diffusion(tau)`` returns σ in internal units for a batch of times. The extra rate (growth)
    is integrated along the stochastic path with the same left-point rule. Positions are written
    into ``out`` (shape ``(len(taus),) + x0.shape``, any device) when given, else into a new
    tensor: each step is stored once.
    """
    x = x0
    extra = torch.zeros(x0.shape[0], device=x0.device, dtype=x0.dtype)
    xs = torch.empty((len(taus),) + tuple(x0.shape), device=x0.device, dtype=x0.dtype) if out is None else out
    extras = torch.empty((len(taus), x0.shape[0]), device=x0.device, dtype=x0.dtype)
    xs[0], extras[0] = x, extra
    for k in range(len(taus) - 1):
        tau = taus[k].expand(x.shape[0])
        dt = taus[k + 1] - taus[k]
        velocity, rate = field(x, tau)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + velocity * dt + diffusion(tau)[:, None] * torch.sqrt(dt) * noise
        if track_extra:
            extra = extra + rate * dt
        xs[k + 1], extras[k + 1] = x, extra
    return xs, extras
