"""Derivatives of the potential (gradient, time derivative, exact and Hutchinson Laplacian),
checked against finite differences, closed forms and the CLT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trajinfer.derivatives import (
    autograd_derivatives,
    exact_laplacian,
    hutchinson_laplacian,
    potential_derivatives,
    rademacher_probes,
    resolve_laplacian,
)
from trajinfer.networks import MLPPotential

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
    assert resolve_laplacian("auto", 2, use="training") == "exact"
    assert resolve_laplacian("auto", 3, use="training") == "hutchinson"
    assert resolve_laplacian("auto", 16, use="evaluation") == "exact"
    assert resolve_laplacian("auto", 17, use="evaluation") == "hutchinson"
    assert resolve_laplacian("hutchinson", 2, use="training") == "hutchinson"
    with pytest.raises(ValueError, match="Unknown laplacian"):
        resolve_laplacian("trace", 2, use="training")
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


@pytest.mark.parametrize("activation", ["silu", "tanh", "softplus"])
def test_probed_derivatives_match_nested_autograd(activation):
    # the written-out gradient and probe are the same numbers as nested autograd with the same
    # probes, and so are their parameter gradients (float64: agreement to rounding)
    torch.manual_seed(0)
    net = MLPPotential(4, (16, 8, 8), activation).double()
    net.set_input_normalization(torch.randn(4).double(), torch.rand(4).double() + 0.5)
    x, t = torch.randn(9, 4, dtype=torch.float64), torch.rand(9, dtype=torch.float64)
    probes = rademacher_probes(3, x)
    value, grad, d_t, lap = net.probed_derivatives(x, t, probes)
    xr, tr = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
    ref_value = net(xr, tr)
    ref_grad, ref_dt = torch.autograd.grad(ref_value.sum(), (xr, tr), create_graph=True)
    hvp = torch.autograd.grad(ref_grad, xr, grad_outputs=probes, is_grads_batched=True, create_graph=True)[0]
    ref_lap = (hvp * probes).sum(-1).mean(0)
    for ours, ref in ((value, ref_value), (grad, ref_grad), (d_t, ref_dt), (lap, ref_lap)):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    params = list(net.parameters())

    def param_grads(g, dt, lp):
        loss = (0.5 * (g**2).sum(-1) + dt + 0.3 * lp).sum()
        return torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)

    for ours, ref in zip(param_grads(grad, d_t, lap), param_grads(ref_grad, ref_dt, ref_lap)):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_hutchinson_training_derivatives_are_the_written_out_ones():
    # potential_derivatives routes a built-in MLP's Hutchinson estimate through
    # probed_derivatives with the probes autograd would draw from the same generator
    net = MLPPotential(3, (16, 16), "silu")
    x, t = torch.randn(32, 3), torch.rand(32)
    ours = potential_derivatives(net, x, t, laplacian="hutchinson", generator=torch.Generator().manual_seed(5))
    ref = autograd_derivatives(net, x, t, laplacian="hutchinson", generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours.laplacian, ref.laplacian, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-4, atol=1e-6)
    assert not MLPPotential(3, (16, 16), form="residual").supports_probed_derivatives
