"""Derivatives of the potential (gradient, time derivative, exact and Hutchinson Laplacian) and
the Action Matching loss, checked against finite differences, closed forms and the CLT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from trajinfer.costs import QuadraticCost
from trajinfer.derivatives import (
    autograd_derivatives,
    exact_laplacian,
    hutchinson_laplacian,
    potential_derivatives,
    resolve_laplacian,
)
from trajinfer.losses import action_matching_loss
from trajinfer.networks import MLPPotential
from trajinfer.paths import CallablePath
from trajinfer.time_sampling import AdaptiveTimeProposal, UniformTimeProposal

DIM = 4


@pytest.fixture(scope="module")
def network() -> MLPPotential:
    """A random smooth potential in double precision (finite differences need float64)."""
    torch.manual_seed(0)
    net = MLPPotential(DIM, hidden_dims=(32, 32), activation="silu")
    net.set_input_normalization(torch.tensor([0.3, -0.2, 0.1, 0.0]), torch.tensor([1.5, 0.7, 1.0, 2.0]))
    # Larger weights than the default init make the Hessian clearly non-diagonal and O(1).
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    return net.double().requires_grad_(False)


@pytest.fixture(scope="module")
def points() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, DIM, generator=generator, dtype=torch.float64)
    t = torch.rand(32, generator=generator, dtype=torch.float64)
    return x, t


def _hessian(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-sample Hessian (B, d, d), one backward pass per axis (independent of the library)."""
    x = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(net(x, t).sum(), x, create_graph=True)[0]
    rows = [torch.autograd.grad(grad[:, i].sum(), x, retain_graph=True)[0] for i in range(x.shape[1])]
    return torch.stack(rows, dim=1).detach()


def _grad(net: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(net(x, t).sum(), x)[0].detach()


def test_gradient_matches_central_differences(network, points):
    x, t = points
    derivs = potential_derivatives(network, x, t, time_derivative=False, create_graph=False)
    h = 1e-5
    fd = torch.stack(
        [(network(x + h * e, t) - network(x - h * e, t)) / (2 * h) for e in torch.eye(DIM, dtype=x.dtype)], dim=1
    )
    # Central differences: truncation h²/6·|∂³s| ~ 1e-10, rounding eps·|s|/h ~ 1e-16/1e-5 = 1e-11.
    np.testing.assert_allclose(derivs.grad.numpy(), fd.numpy(), atol=1e-7, rtol=1e-6)
    np.testing.assert_allclose(derivs.value.numpy(), network(x, t).numpy(), rtol=1e-12)


def test_time_derivative_matches_central_differences(network, points):
    x, t = points
    derivs = potential_derivatives(network, x, t, time_derivative=True, create_graph=False)
    h = 1e-5
    fd = (network(x, t + h) - network(x, t - h)) / (2 * h)
    # Same O(h²) truncation / O(eps/h) rounding budget as the gradient.
    np.testing.assert_allclose(derivs.time_derivative.numpy(), fd.numpy(), atol=1e-7, rtol=1e-6)


def test_exact_laplacian_matches_hessian_trace_and_finite_differences(network, points):
    x, t = points
    derivs = potential_derivatives(network, x, t, time_derivative=False, laplacian="exact", create_graph=False)
    trace = torch.diagonal(_hessian(network, x, t), dim1=1, dim2=2).sum(-1)
    # Same quantity computed two ways in float64: agreement to rounding.
    np.testing.assert_allclose(derivs.laplacian.numpy(), trace.numpy(), rtol=1e-10, atol=1e-10)
    h = 1e-4
    fd = sum(
        (_grad(network, x + h * e, t)[:, i] - _grad(network, x - h * e, t)[:, i]) / (2 * h)
        for i, e in enumerate(torch.eye(DIM, dtype=x.dtype))
    )
    # Central differences of the autograd gradient: truncation h²/6·|∂⁴s| ~ 1e-8, rounding 1e-12.
    np.testing.assert_allclose(derivs.laplacian.numpy(), fd.numpy(), atol=1e-6, rtol=1e-6)
    assert derivs.laplacian.abs().max() > 1e-2  # the check is not vacuous


def test_exact_laplacian_function_directly(network, points):
    x, t = points
    x = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(network(x, t).sum(), x, create_graph=True)[0]
    lap = exact_laplacian(grad, x, create_graph=False)
    trace = torch.diagonal(_hessian(network, x, t), dim1=1, dim2=2).sum(-1)
    np.testing.assert_allclose(lap.detach().numpy(), trace.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("activation", ["silu", "softplus", "tanh"])
@pytest.mark.parametrize("form", ["mlp", "residual", "inner"])
def test_forward_mode_jet_matches_autograd(form, activation, points):
    # Built-in MLP potentials take the forward-mode jet path for exact Laplacians; it must give
    # the same value, gradient, time derivative and Laplacian as nested reverse-mode autograd,
    # and the same parameter gradients of a loss-like combination. Same function, two float64
    # evaluation orders: agreement to rounding (1e-9 relative).
    torch.manual_seed(6)
    net = MLPPotential(DIM, hidden_dims=(16, 16), activation=activation, form=form).double()
    net.set_input_normalization(torch.tensor([0.3, -0.2, 0.1, 0.0]), torch.tensor([1.5, 0.7, 1.0, 2.0]))
    assert net.supports_jet
    x, t = points
    jet = potential_derivatives(net, x, t, time_derivative=True, laplacian="exact")
    ref = autograd_derivatives(net, x, t, time_derivative=True, laplacian="exact")
    for name in ("value", "grad", "time_derivative", "laplacian"):
        torch.testing.assert_close(getattr(jet, name), getattr(ref, name), rtol=1e-9, atol=1e-10, msg=name)

    def objective(d):
        return (0.5 * d.grad.pow(2).sum(1) + d.time_derivative + 0.3 * d.laplacian + 0.5 * d.value**2).mean()

    params = list(net.parameters())
    g_jet = torch.autograd.grad(objective(jet), params)
    g_ref = torch.autograd.grad(objective(ref), params)
    for a, b in zip(g_jet, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    # Without a graph the outputs are plain tensors.
    frozen = potential_derivatives(net, x, t, laplacian="exact", create_graph=False)
    assert not frozen.laplacian.requires_grad and not frozen.grad.requires_grad


def test_unsupported_activation_falls_back_to_autograd(points):
    torch.manual_seed(7)
    net = MLPPotential(DIM, hidden_dims=(8,), activation="gelu").double()
    assert not net.supports_jet
    x, t = points
    derivs = potential_derivatives(net, x, t, laplacian="exact", create_graph=False)
    trace = torch.diagonal(_hessian(net, x, t), dim1=1, dim2=2).sum(-1)
    np.testing.assert_allclose(derivs.laplacian.numpy(), trace.numpy(), rtol=1e-10, atol=1e-10)


def test_hutchinson_agrees_with_exact_within_clt_bound(network, points):
    x, t = points
    hess = _hessian(network, x, t)
    exact = torch.diagonal(hess, dim1=1, dim2=2).sum(-1)
    # For Rademacher probes εᵀHε = tr H + Σ_{i≠j} H_ij ε_i ε_j, whose variance is
    # 2 Σ_{i≠j} H_ij² (diagonal entries contribute no noise).
    off = hess - torch.diag_embed(torch.diagonal(hess, dim1=1, dim2=2))
    var_one_probe = 2.0 * (off**2).sum(dim=(1, 2))
    n_probes = 4000
    generator = torch.Generator().manual_seed(2)
    xg = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(network(xg, t).sum(), xg, create_graph=True)[0]
    estimate = hutchinson_laplacian(grad, xg, n_probes=n_probes, generator=generator, create_graph=False).detach()
    std = torch.sqrt(var_one_probe / n_probes)
    z = ((estimate - exact) / std).numpy()
    print(f"\n[Hutchinson] {n_probes} probes, 32 points: max |z| = {np.abs(z).max():.2f}, mean z² = {np.mean(z**2):.2f}")
    # CLT: each z is ~N(0, 1) (mean of 4000 iid bounded terms). P(max of 32 |z| > 5) ≈ 2e-5.
    assert np.abs(z).max() < 5.0
    # mean z² over 32 points is ~chi²_32/32: mean 1, SD 0.25; [0.3, 2.2] is beyond 4 SD either
    # side. This also checks the variance formula, i.e. that probes are Rademacher (Gaussian
    # probes would add the diagonal's 2 Σ H_ii² to the variance).
    assert 0.3 < np.mean(z**2) < 2.2


def test_hutchinson_is_exact_for_diagonal_hessian():
    # s = Σ a_i x_i² / 2 has a diagonal Hessian: εᵀHε = Σ a_i exactly, for any probe.
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    x = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    grad = torch.autograd.grad((0.5 * a * x**2).sum(), x, create_graph=True)[0]
    lap = hutchinson_laplacian(grad, x, n_probes=1, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(lap.detach().numpy(), np.full(10, a.sum().item()), rtol=1e-12)


def test_potential_derivatives_hutchinson_is_seeded(network, points):
    x, t = points
    runs = [
        potential_derivatives(network, x, t, laplacian="hutchinson", n_probes=3,
                              generator=torch.Generator().manual_seed(11), create_graph=False).laplacian
        for _ in range(2)
    ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_laplacian_choices_and_errors(network, points):
    x, t = points
    assert resolve_laplacian("auto", 16) == "exact"
    assert resolve_laplacian("auto", 17) == "hutchinson"
    assert resolve_laplacian("hutchinson", 2) == "hutchinson"
    with pytest.raises(ValueError, match="Unknown laplacian"):
        resolve_laplacian("trace", 2)
    with pytest.raises(ValueError, match="laplacian must be"):
        potential_derivatives(network, x, t, laplacian="bogus")
    xg = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(network(xg, t).sum(), xg, create_graph=True)[0]
    with pytest.raises(ValueError, match="n_probes"):
        hutchinson_laplacian(grad, xg, n_probes=0)


def test_derivatives_are_differentiable_wrt_parameters(points):
    torch.manual_seed(3)
    net = MLPPotential(DIM, hidden_dims=(16, 16)).double()
    x, t = points
    for lap in ("exact", "hutchinson"):
        derivs = potential_derivatives(net, x, t, laplacian=lap, generator=torch.Generator().manual_seed(0))
        total = derivs.value.sum() + derivs.grad.pow(2).sum() + derivs.time_derivative.sum() + derivs.laplacian.sum()
        grads = torch.autograd.grad(total, list(net.parameters()))
        assert all(torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


# ------------------------------------------------------------------------------------ losses
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


def _without_batched_grads(monkeypatch):
    """Make every batched autograd call fail, as an op without a vmap batching rule would."""
    real_grad = torch.autograd.grad

    def grad(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented (simulated)")
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", grad)


def test_exact_laplacian_fallback_without_batching_rule(network, points, monkeypatch):
    x, t = points
    trace = torch.diagonal(_hessian(network, x, t), dim1=1, dim2=2).sum(-1)
    _without_batched_grads(monkeypatch)
    xg = x.detach().requires_grad_(True)
    grad = torch.autograd.grad(network(xg, t).sum(), xg, create_graph=True)[0]
    lap = exact_laplacian(grad, xg, create_graph=True)
    np.testing.assert_allclose(lap.detach().numpy(), trace.numpy(), rtol=1e-10, atol=1e-10)


def test_exact_laplacian_fallback_without_graph(points, monkeypatch):
    torch.manual_seed(5)
    net = MLPPotential(DIM, hidden_dims=(16, 16), activation="gelu").double().requires_grad_(False)
    x, t = points
    trace = torch.diagonal(_hessian(net, x, t), dim1=1, dim2=2).sum(-1)
    _without_batched_grads(monkeypatch)
    derivs = potential_derivatives(net, x, t, time_derivative=False, laplacian="exact", create_graph=False)
    np.testing.assert_allclose(derivs.laplacian.numpy(), trace.numpy(), rtol=1e-10, atol=1e-10)
