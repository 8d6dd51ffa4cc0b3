"""The fitted dynamics apart from the trainer: ``tj.Dynamics`` evaluates, simulates, scores, saves.

Analytic potentials take internal time tau = (t − t0) / T in [0, 1]; every public method takes
and returns user units, so a user velocity is ∇s/T: the time range (1, 5) here (T = 4) makes a
units slip show up as a factor 4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from torch import nn

import trajinfer as tj
from trajinfer.costs import PowerCost, QuadraticCost
from trajinfer.networks import MLPPotential

FAST = dict(hidden_dims=(16, 16), n_iter=15, batch_size=32, run=dict(device="cpu", progress=False), seed=0)
T0, T1 = 1.0, 5.0
DURATION = T1 - T0
A = np.array([[0.5, 0.2], [0.2, -0.3]])


def _snapshots() -> tj.SnapshotPath:
    rng = np.random.default_rng(0)
    return tj.SnapshotPath([rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + [2.0, 0.0]], [1.0, 3.0])


@pytest.fixture(scope="module", params=["am", "ueam"])
def fitted(request) -> tj.ActionMatching:
    params = dict(method="ueam", sigma=0.3, growth_scale=2.0) if request.param == "ueam" else dict(method="am")
    return tj.ActionMatching(**FAST, **params).fit(_snapshots())


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(30, 2)).astype(np.float32)


class GrowingQuadratic(nn.Module):
    """s(x, tau) = (1 + tau) xᵀ A x / 2 + c: internal velocity (1 + tau) A x."""

    def __init__(self, A: np.ndarray, c: float = 0.0):
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float32))
        self.c = c

    def forward(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + tau) * ((x @ self.A) * x).sum(dim=1) + self.c


def _analytic(**params) -> tj.Dynamics:
    return tj.Dynamics(GrowingQuadratic(A, params.pop("c", 0.0)), dim=2, t_range=(T0, T1), device="cpu", **params)


# ------------------------------------------------------------------ the estimator's dynamics
def test_estimator_evaluates_through_its_dynamics(fitted, X):
    dynamics = fitted.dynamics_
    assert isinstance(dynamics, tj.Dynamics) and dynamics.method == fitted.method
    assert (dynamics.dim, dynamics.t_range, dynamics.duration) == (2, (1.0, 3.0), 2.0)
    assert dynamics.sigma == fitted.sigma and dynamics.growth_scale == fitted.growth_scale
    np.testing.assert_array_equal(dynamics.velocity(X, 2.0), fitted.velocity(X, 2.0))
    np.testing.assert_array_equal(dynamics.action(X, 1.5), fitted.action(X, 1.5))
    times = np.linspace(1.0, 3.0, 30)
    np.testing.assert_array_equal(dynamics.velocity(X, times), fitted.velocity(X, times))
    ours = fitted.simulate(X, 1.0, 3.0, n_steps=6, seed=5)
    theirs = dynamics.simulate(X, 1.0, 3.0, n_steps=6, seed=5, progress=False)
    np.testing.assert_array_equal(ours.X, theirs.X)
    np.testing.assert_array_equal(ours.log_weights, theirs.log_weights)
    assert np.isfinite(ours.X).all() and ours.X.shape == (7, 30, 2)
    options = dict(batch_size=fitted.batch_size, laplacian=fitted.laplacian_)
    score = fitted.score(_snapshots(), n_samples=2000, seed=3)
    assert np.isfinite(score) and score == dynamics.score(_snapshots(), n_samples=2000, seed=3, **options)
    if fitted.method == "ueam":
        # growth per user time unit: s_user / δ² with δ = growth_scale = 2
        np.testing.assert_array_equal(dynamics.growth(X, 2.0), fitted.growth(X, 2.0))
        np.testing.assert_allclose(fitted.growth(X, 2.0), fitted.action(X, 2.0) / 4.0, rtol=1e-6)
    else:
        lik = fitted.log_likelihood(X, lambda x: np.zeros(len(x)), n_steps=4)
        np.testing.assert_array_equal(lik, dynamics.log_likelihood(X, lambda x: np.zeros(len(x)), n_steps=4))
        assert lik.shape == (30,) and np.isfinite(lik).all()


def test_dynamics_save_load_round_trip(fitted, X, tmp_path):
    file = tmp_path / "dynamics.pt"
    fitted.dynamics_.save(file)
    loaded = tj.Dynamics.load(file, device="cpu")
    assert (loaded.method, loaded.sigma, loaded.growth_scale) == (fitted.dynamics_.method, fitted.sigma, fitted.growth_scale)
    assert loaded.dim == 2 and loaded.t_range == (1.0, 3.0) and loaded.device == torch.device("cpu")
    assert type(loaded.cost) is type(fitted.cost_) and isinstance(loaded.potential, MLPPotential)
    assert not any(p.requires_grad for p in loaded.potential.parameters())  # frozen for evaluation
    np.testing.assert_array_equal(loaded.velocity(X, 2.5), fitted.velocity(X, 2.5))
    np.testing.assert_array_equal(loaded.action(X, 1.2), fitted.action(X, 1.2))
    a = loaded.simulate(X, 1.0, 3.0, n_steps=4, seed=2, progress=False)
    b = fitted.simulate(X, 1.0, 3.0, n_steps=4, seed=2)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.log_weights, b.log_weights)


def test_dynamics_of_a_power_cost_round_trip(X, tmp_path):
    est = tj.ActionMatching(method="am", cost=PowerCost(3.0), **FAST).fit(_snapshots())
    est.dynamics_.save(tmp_path / "power.pt")
    loaded = tj.Dynamics.load(tmp_path / "power.pt", device="cpu")
    assert isinstance(loaded.cost, PowerCost) and loaded.cost.config() == est.cost_.config()
    np.testing.assert_array_equal(loaded.velocity(X, 2.0), est.velocity(X, 2.0))


# ------------------------------------------------------------------ analytic potentials
def test_analytic_potential_gives_the_known_velocity_in_user_units(X):
    dynamics = _analytic()
    assert dynamics.duration == DURATION and isinstance(dynamics.cost, QuadraticCost)
    for t in (1.0, 2.0, 4.5, 5.0):
        tau = (t - T0) / DURATION
        # user velocity = ∇s_internal / T = (1 + tau) A x / T
        np.testing.assert_allclose(dynamics.velocity(X, t), (1 + tau) * X @ A.T / DURATION, rtol=1e-5, atol=1e-6)
        s = 0.5 * (1 + tau) * np.einsum("ni,ij,nj->n", X, A, X)
        np.testing.assert_allclose(dynamics.action(X, t), s / DURATION, rtol=1e-5, atol=1e-6)
    tensor = dynamics.velocity(torch.as_tensor(X), 3.0, as_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (30, 2)
    with pytest.raises(ValueError, match=r"outside the fitted time range \[1, 5\]"):
        dynamics.velocity(X, 0.5)
    with pytest.raises(ValueError, match="growth is defined for method='uam' or 'ueam'"):
        dynamics.growth(X, 2.0)


def test_analytic_flow_in_user_time_matches_the_closed_form(X):
    # dx/dtau = (1 + tau) A x, so x(tau) = expm(A (tau + tau²/2)) x(0): from t = 1 to t = 5
    # (tau 0 to 1) the flow is expm(1.5 A); RK4 with 40 steps is exact to float32 rounding
    traj = _analytic().simulate(X, T0, T1, n_steps=40, solver="rk4", progress=False)
    np.testing.assert_allclose(traj.times, np.linspace(T0, T1, 41))
    np.testing.assert_allclose(traj.X[-1], X @ expm(1.5 * A).T, rtol=1e-5, atol=1e-5)
    mid = 3.0  # tau = 1/2
    np.testing.assert_allclose(traj.at(mid)[0], X @ expm(A * (0.5 + 0.125)).T, rtol=1e-5, atol=1e-5)
    back = _analytic().simulate(traj.X[-1], T1, T0, n_steps=40, solver="rk4", progress=False)
    np.testing.assert_allclose(back.X[-1], X, rtol=1e-4, atol=1e-4)


def test_analytic_growth_and_weights_in_user_units(X):
    # uam with s = c (A = 0): growth s / (δ² T) per user time unit, log w(t) = c (t − t0) / (δ² T)
    c, delta = 0.8, 2.0
    dynamics = tj.Dynamics(GrowingQuadratic(np.zeros((2, 2)), c), dim=2, t_range=(T0, T1), method="uam", growth_scale=delta, device="cpu")
    np.testing.assert_allclose(dynamics.growth(X, 2.0), np.full(30, c / (delta**2 * DURATION)), rtol=1e-6)
    traj = dynamics.simulate(X, T0, T1, n_steps=8, progress=False)
    np.testing.assert_allclose(traj.X, np.broadcast_to(X, traj.X.shape))
    expected = c * (traj.times - T0) / (delta**2 * DURATION)
    np.testing.assert_allclose(traj.log_weights, np.broadcast_to(expected[:, None], (9, 30)), rtol=1e-6, atol=1e-7)


def test_sigma_is_in_user_units_of_x_per_sqrt_time():
    # zero drift, σ = 0.5 over 4 user time units: the spread grows by σ² (t − t0) = 1.0 per axis
    # whatever the internal time; the sample variance of 20000 has SE sqrt(2/20000) = 0.01
    dynamics = tj.Dynamics(GrowingQuadratic(np.zeros((2, 2))), dim=2, t_range=(T0, T1), method="eam", sigma=0.5, device="cpu")
    start = np.zeros((20000, 2), dtype=np.float32)
    traj = dynamics.simulate(start, T0, T1, n_steps=20, seed=0, progress=False)
    np.testing.assert_allclose(traj.X[-1].var(0), 1.0, atol=0.05)
    np.testing.assert_allclose(traj.at(3.0)[0].var(0), 0.5, atol=0.03)
    with pytest.raises(ValueError, match="forward in time only"):
        dynamics.simulate(start[:5], T1, T0, progress=False)


def test_dynamics_constructor_checks_and_repr():
    with pytest.raises(ValueError, match=r"method must be one of \('am', 'eam', 'uam', 'ueam'\), got 'sde'"):
        tj.Dynamics(GrowingQuadratic(A), dim=2, method="sde")
    with pytest.raises(ValueError, match="method='eam' needs sigma"):
        tj.Dynamics(GrowingQuadratic(A), dim=2, method="eam")
    dynamics = _analytic(method="eam", sigma=0.2)
    assert repr(dynamics) == "Dynamics(method='eam', dim=2, t_range=(1.0, 5.0), sigma=0.2, cost='quadratic', device='cpu')"
    assert dynamics.to_internal(torch.tensor([1.0, 3.0, 5.0])).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="3 features but the model was fitted on 2"):
        dynamics.velocity(np.zeros((4, 3)), 2.0)


def test_from_potential_wraps_the_same_dynamics(X):
    est = tj.ActionMatching.from_potential(GrowingQuadratic(A), dim=2, t_range=(T0, T1), device="cpu", run=dict(progress=False))
    assert isinstance(est.dynamics_, tj.Dynamics) and est.t_range_ == (T0, T1) and est.n_iter_ == 0
    np.testing.assert_allclose(est.velocity(X, 2.0), _analytic().velocity(X, 2.0), rtol=0, atol=0)
    assert est.run == tj.RunConfig(device="cpu", progress=False)
    assert math.isclose(est.duration_, DURATION)
