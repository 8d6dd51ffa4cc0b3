"""The Action Matching loss of every variant, checked against closed forms on Gaussian paths and
quadratic or constant potentials."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from trajinfer.costs import QuadraticCost
from trajinfer.losses import action_matching_loss
from trajinfer.networks import MLPPotential
from trajinfer.paths import CallablePath
from trajinfer.time_sampling import AdaptiveTimeProposal, UniformTimeProposal


def _translating_path(c: torch.Tensor, mu0: torch.Tensor, v: float, mass_fn=None) -> CallablePath:
    def draw(t: torch.Tensor) -> torch.Tensor:
        return mu0 + c * t[:, None] + math.sqrt(v) * torch.randn(t.shape[0], c.shape[0])

    return CallablePath(draw, mass_fn=mass_fn)


class _Quadratic(nn.Module):
    """s(x, τ) = <b, x> + a|x|²/2 + κ τ."""

    def __init__(self, b: torch.Tensor, a: float, kappa: float):
        super().__init__()
        self.b = nn.Parameter(b.clone())
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.kappa = kappa

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x @ self.b + 0.5 * self.a * (x**2).sum(1) + self.kappa * t


@pytest.mark.parametrize("method", ["am", "eam"])
def test_loss_value_matches_closed_form(method):
    # Path q_τ = N(μ0 + cτ, v I) in d = 2, potential s = <b,x> + a|x|²/2 + κτ. In closed form
    #   E_0 s_0 - E_1 s_1 = -<b,c> - a(2<μ0,c> + |c|²)/2 - κ,
    #   ∫ E_τ[½|b + a x|² + κ] dτ = ½|b|² + a<b, μ0 + c/2> + ½a²(|μ0|² + <μ0,c> + |c|²/3 + d v) + κ,
    #   eAM adds ∫ σ²/2 Δs = σ² a d / 2 (Δs = a d).
    torch.manual_seed(0)
    d, v, sigma_sq = 2, 0.5, 0.3
    c, mu0, b = torch.tensor([1.0, -0.5]), torch.tensor([0.2, 0.4]), torch.tensor([0.7, 0.1])
    a, kappa = 0.4, 0.9
    potential = _Quadratic(b, a, kappa)
    expected = (
        -(b @ c) - 0.5 * a * (2 * (mu0 @ c) + c @ c) - kappa
        + 0.5 * (b @ b) + a * (b @ (mu0 + 0.5 * c))
        + 0.5 * a**2 * (mu0 @ mu0 + mu0 @ c + (c @ c) / 3 + d * v) + kappa
    ).item()
    if method == "eam":
        expected += 0.5 * sigma_sq * a * d
    path = _translating_path(c, mu0, v)
    batch = 20000
    values = [
        action_matching_loss(
            potential, path, method=method, cost=QuadraticCost(), batch_size=batch,
            proposal=UniformTimeProposal(), diffusion_sq=lambda tau: torch.full_like(tau, sigma_sq),
            laplacian="exact", generator=torch.Generator().manual_seed(k),
        ).loss.item()
        for k in range(5)
    ]
    mean, spread = float(np.mean(values)), float(np.std(values, ddof=1))
    print(f"\n[loss {method}] closed form {expected:.4f}, estimate {mean:.4f} +- {spread / math.sqrt(5):.4f}")
    # Each estimate averages 20000 samples per term; the spread of the 5 repeats (the SE of one
    # estimate) was measured at 0.005, so the 5-repeat mean has SE ~0.002. Bound 0.02 (~10 SE)
    # still catches any sign or factor slip: the smallest term, the eAM Laplacian one, is 0.12.
    assert abs(mean - expected) < 0.02
    assert spread < 0.02


def test_score_is_minus_the_loss_and_ranks_the_true_action_first():
    import trajinfer as tj

    # Translating path N(μ0 + cτ, v I): the true action s = <c, x> has loss
    # E_0 s_0 - E_1 s_1 + ∫ ½|c|² = -|c|² + ½|c|² = -½|c|², so score ½|c|² = 0.625. The half-speed
    # action <c, x>/2 scores ½|c|² - ⅛|c|² = 0.469 (loss -|c|²/2 + |c|²/8).
    torch.manual_seed(1)
    c, mu0, v = torch.tensor([1.0, -0.5]), torch.tensor([0.2, 0.4]), 0.5
    path = _translating_path(c, mu0, v)
    scores = {}
    for name, scale in (("true", 1.0), ("half", 0.5)):
        est = tj.ActionMatching.from_potential(_Quadratic(scale * c, 0.0, 0.0), dim=2, device="cpu", method="am")
        scores[name] = est.score(path, n_samples=40_000)
    print(f"\n[score] true {scores['true']:.4f} (exact 0.625), half-speed {scores['half']:.4f} (exact 0.469)")
    # Per sample the boundary terms have SD |c|·sqrt(v) = 0.79 each and the interior term is
    # constant, so the SE of a 40000-sample score is sqrt(2)·0.79/200 = 0.0056; bound 0.03 ≈ 5 SE,
    # well inside the 0.156 gap between the two actions.
    assert abs(scores["true"] - 0.625) < 0.03
    assert abs(scores["half"] - 0.469) < 0.03
    assert scores["true"] > scores["half"]
    with pytest.raises(ValueError, match="time range"):
        est.score(CallablePath(lambda t: torch.zeros(t.shape[0], 2), t_range=(0.0, 2.0)))


def test_unbalanced_loss_with_mass_is_exact_for_constant_potential():
    # s ≡ κ and mass m(t) = 1 + t: L = m(0)κ - m(1)κ + ∫ m ½κ² dτ. The time integral is the
    # Monte-Carlo mean over the drawn τ (in expectation ¾κ²), so compare with that mean exactly.
    kappa = 0.8

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.k = nn.Parameter(torch.tensor(kappa))

        def forward(self, x, t):
            return self.k + 0.0 * x.sum(1) + 0.0 * t

    path = _translating_path(torch.tensor([1.0]), torch.tensor([0.0]), 1.0, mass_fn=lambda t: 1.0 + t)
    terms = action_matching_loss(
        Constant(), path, method="uam", cost=QuadraticCost(), batch_size=64,
        proposal=UniformTimeProposal(), generator=torch.Generator().manual_seed(0),
    )
    expected = kappa - 2 * kappa + 0.5 * kappa**2 * (1.0 + terms.tau.double()).mean().item()
    # float32 arithmetic on O(1) numbers: 1e-6.
    assert abs(terms.loss.item() - expected) < 1e-6


def test_weighted_loss_is_exact_for_constant_potential():
    # ω(τ) = 1 + τ, s ≡ κ, normalised path: L = ω(0)κ - ω(1)κ + ∫ κ ω' dτ = κ - 2κ + κ = 0 (App. C).
    class Constant(nn.Module):
        def forward(self, x, t):
            return 0.8 + 0.0 * x.sum(1) + 0.0 * t

    path = _translating_path(torch.tensor([1.0, 0.0]), torch.zeros(2), 1.0)
    for proposal in (UniformTimeProposal(), AdaptiveTimeProposal()):
        terms = action_matching_loss(
            Constant(), path, method="am", cost=QuadraticCost(), batch_size=64, proposal=proposal,
            time_weight=lambda tau: 1.0 + tau, generator=torch.Generator().manual_seed(0),
        )
        assert abs(terms.loss.item()) < 1e-6  # float32 rounding


@pytest.mark.parametrize("method,laplacian", [("am", "exact"), ("eam", "exact"), ("ueam", "hutchinson"), ("uam", "exact")])
def test_loss_gradient_wrt_parameters_is_finite(method, laplacian):
    torch.manual_seed(0)
    net = MLPPotential(2, hidden_dims=(16, 16))
    path = _translating_path(torch.tensor([1.0, -1.0]), torch.zeros(2), 1.0, mass_fn=lambda t: 1.0 + 0.5 * t)
    terms = action_matching_loss(
        net, path, method=method, cost=QuadraticCost(), batch_size=64, proposal=AdaptiveTimeProposal(),
        diffusion_sq=lambda tau: torch.full_like(tau, 0.2), time_weight=lambda tau: torch.exp(-tau),
        laplacian=laplacian, generator=torch.Generator().manual_seed(0),
    )
    terms.loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert torch.isfinite(terms.loss)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert terms.integrand.shape == terms.tau.shape == (64,)
