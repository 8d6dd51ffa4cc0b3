"""Simulation, weights and log-likelihood of known linear fields against closed forms.

Analytic potentials are wrapped with ``ActionMatching.from_potential``. They take internal time
tau in [0, 1]; the estimators here use the user range t in [0, 2] (T = 2), so the user velocity
is ∇s/T and tau = t/2: a units slip shows up as a factor 2 in the exponent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from scipy.stats import multivariate_normal
from torch import nn

import trajinfer as tj
from trajinfer.costs import RelativisticCost

T_RANGE = (0.0, 2.0)
DURATION = 2.0


class QuadraticPotential(nn.Module):
    """s(x, tau) = xᵀ A x / 2 + c (A symmetric): internal velocity A x, Laplacian tr A."""

    def __init__(self, A: np.ndarray, c: float = 0.0):
        super().__init__()
        self.register_buffer("A", torch.as_tensor(A, dtype=torch.float32))
        self.c = c

    def forward(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x @ self.A) * x).sum(dim=1) + self.c + 0.0 * tau


A_ISO = 0.7 * np.eye(2)
A_SYM = np.array([[0.5, 0.3], [0.3, -0.4]])


def _model(A: np.ndarray, c: float = 0.0, **params) -> tj.ActionMatching:
    return tj.ActionMatching.from_potential(
        QuadraticPotential(A, c), dim=2, t_range=T_RANGE, device="cpu", run=dict(progress=False), **params
    )


@pytest.fixture(scope="module")
def x0() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)


def _exact(x: np.ndarray, A: np.ndarray, t_from: float, t_to: float) -> np.ndarray:
    """x(t_to) = expm(A (tau_to - tau_from)) x(t_from), tau = t / T."""
    return x @ expm(A * (t_to - t_from) / DURATION).T


@pytest.mark.parametrize("A", [A_ISO, A_SYM], ids=["isotropic", "symmetric"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_fixed_and_adaptive_solvers_match_matrix_exponential(A, direction, x0):
    model = _model(A)
    t_from, t_to = (0.0, 2.0) if direction == "forward" else (2.0, 0.0)
    exact = _exact(x0, A, t_from, t_to)
    scale = np.abs(exact).max()
    errors = {}
    for solver, n_steps in [("rk4", 50), ("dopri5", 4)]:
        traj = model.simulate(x0, t_from, t_to, n_steps=n_steps, solver=solver)
        assert traj.X.shape == (n_steps + 1, 200, 2)
        np.testing.assert_allclose(traj.times, np.linspace(t_from, t_to, n_steps + 1))
        np.testing.assert_allclose(traj.X[0], x0)
        errors[solver] = np.abs(traj.X[-1] - exact).max() / scale
        # Intermediate outputs are on the exact curve as well.
        mid = n_steps // 2
        np.testing.assert_allclose(traj.X[mid], _exact(x0, A, t_from, traj.times[mid]), atol=2e-4 * scale)
    print(f"\n[simulate {direction}] max relative error rk4 {errors['rk4']:.2e}, dopri5 {errors['dopri5']:.2e}")
    # RK4 with h = 0.02 (internal): local error (|λ|h)^5/120 ~ 4e-12, so float32 rounding
    # (~1e-7 per step x 50 steps) dominates: 1e-5.
    assert errors["rk4"] < 1e-5
    # dopri5 at rtol = atol = 1e-5: the global error is a small multiple of the tolerance.
    assert errors["dopri5"] < 1e-4


def test_euler_is_first_order_with_known_error_constant(x0):
    # For dx/dtau = a x, Euler gives (1 + a h)^N x0 against e^{a} x0 (tau from 0 to 1, h = 1/N);
    # the leading global error is e^{a} a² h / 2 · |x0| (first order), with relative correction O(h).
    a = 0.7
    model = _model(a * np.eye(2))
    exact = _exact(x0, a * np.eye(2), 0.0, 2.0)
    errors = []
    for n_steps in (50, 100):
        traj = model.simulate(x0, 0.0, 2.0, n_steps=n_steps, solver="euler")
        err = np.abs(traj.X[-1] - exact).max()
        leading = math.exp(a) * a**2 / (2 * n_steps) * np.abs(x0).max()
        # Exactly the Euler recursion, up to float32 accumulation (N·eps ~ 1e-5).
        np.testing.assert_allclose(traj.X[-1], x0 * (1 + a / n_steps) ** n_steps, rtol=2e-5)
        errors.append(err)
        # Within 10% of the leading term (the next term is relatively O(a h) = 1.4% at N = 50).
        assert 0.9 * leading < err < 1.1 * leading
    print(f"\n[euler] max abs error N=50: {errors[0]:.3e}, N=100: {errors[1]:.3e}, ratio {errors[0] / errors[1]:.3f}")
    # Halving the step halves the error: ratio 2 up to O(h).
    assert 1.9 < errors[0] / errors[1] < 2.1


def test_user_velocity_is_gradient_divided_by_duration(x0):
    model = _model(A_SYM)
    np.testing.assert_allclose(model.velocity(x0, 0.5), x0 @ A_SYM.T / DURATION, rtol=1e-5, atol=1e-6)
    # The action in user units is s/T, so its gradient is the user velocity.
    s = model.action(x0, 1.0)
    np.testing.assert_allclose(s, 0.5 * np.einsum("ni,ij,nj->n", x0, A_SYM, x0) / DURATION, rtol=1e-5, atol=1e-6)


def test_chunked_simulation_equals_unchunked(x0):
    model = _model(A_SYM)
    full = model.simulate(x0, 0.0, 2.0, n_steps=10, solver="rk4", chunk_size=None)
    chunked = model.simulate(x0, 0.0, 2.0, n_steps=10, solver="rk4", chunk_size=37)
    np.testing.assert_allclose(chunked.X, full.X, rtol=1e-6, atol=1e-6)


def test_uam_constant_growth_gives_linear_log_weights(x0):
    c = 0.9
    model = _model(np.zeros((2, 2)), c=c, method="uam")
    # Growth per user time unit is s/T; the velocity is zero.
    np.testing.assert_allclose(model.growth(x0, 1.0), np.full(200, c / DURATION), rtol=1e-6)
    np.testing.assert_allclose(model.velocity(x0, 1.0), 0.0, atol=0)
    traj = model.simulate(x0, 0.0, 2.0, n_steps=8, solver="euler")
    np.testing.assert_allclose(traj.X, np.broadcast_to(x0, traj.X.shape))
    # log w(t) = ∫ s dtau = c t / T exactly (constant integrand: any solver is exact).
    np.testing.assert_allclose(traj.log_weights, np.broadcast_to((c * traj.times / DURATION)[:, None], (9, 200)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(traj.relative_mass, np.exp(c * traj.times / DURATION), rtol=1e-6)
    np.testing.assert_allclose(traj.weights, 1.0 / 200, rtol=1e-6)


def test_uam_log_weights_along_a_moving_linear_flow(x0):
    # s = c + a|x|²/2: x(tau) = x0 e^{a tau} and log w(tau) = c tau + |x0|² (e^{2 a tau} - 1)/4.
    a, c = 0.6, -0.4
    model = _model(a * np.eye(2), c=c, method="uam")
    traj = model.simulate(x0, 0.0, 2.0, n_steps=50, solver="rk4")
    tau = traj.times / DURATION
    r2 = (x0.astype(np.float64) ** 2).sum(1)
    exact = c * tau[:, None] + r2[None, :] * (np.exp(2 * a * tau[:, None]) - 1) / 4
    # RK4 truncation ~1e-10; float32 state (|log w| up to ~5): 1e-5 relative.
    np.testing.assert_allclose(traj.log_weights, exact, rtol=1e-5, atol=1e-5)
    # Normalised weights ∝ exp(log w).
    w = np.exp(exact[-1] - exact[-1].max())
    np.testing.assert_allclose(traj.weights[-1], w / w.sum(), rtol=1e-4)
    x_at, w_at = traj.at(1.3)
    np.testing.assert_allclose(x_at, traj.X[np.argmin(np.abs(traj.times - 1.3))])


def _log_q0(x: np.ndarray) -> np.ndarray:
    return -0.5 * (x**2).sum(1) - x.shape[1] / 2 * math.log(2 * math.pi)


@pytest.mark.parametrize("t_eval", [2.0, 1.0])
def test_log_likelihood_exact_laplacian_matches_gaussian(t_eval):
    # x(tau) = expm(A tau) x0 with x0 ~ N(0, I) and A symmetric: q_tau = N(0, expm(2 A tau)).
    model = _model(A_SYM)
    tau = t_eval / DURATION
    cov = expm(2 * A_SYM * tau)
    X = np.random.default_rng(1).multivariate_normal(np.zeros(2), cov, size=300).astype(np.float32)
    got = model.log_likelihood(X, _log_q0, t=t_eval, n_steps=50, laplacian="exact")
    exact = multivariate_normal(np.zeros(2), cov).logpdf(X)
    err = np.abs(got - exact).max()
    print(f"\n[log_likelihood exact, t={t_eval}] max abs error {err:.2e}")
    # RK4 (h = 0.02) is exact to ~1e-10 here; float32 rounding on log densities of size ~5-10
    # over 50 steps: 1e-4.
    assert err < 1e-4


def test_log_likelihood_hutchinson_is_unbiased_within_clt_bound():
    # Hessian A_SYM has off-diagonal b = 0.3: each Rademacher probe gives tr A ± 2b, the only
    # noise (the positions do not depend on the probes). The ODE is integrated backward over
    # tau in [0, 1] with N = 50 RK4 steps of h = 0.02, one fresh probe per stage; the stage
    # weights w_i sum to h and Σ w_i² = (20/64) h² (3/8 rule, torchdiffeq's "rk4") or (10/36) h²
    # (classic rule). So the per-point SD is sqrt(N (2b)² Σ w_i²) = 0.0474 (or 0.0447).
    torch.manual_seed(0)  # log_likelihood's Hutchinson probes use the global torch RNG
    model = _model(A_SYM)
    cov = expm(2 * A_SYM)
    n, n_steps, b, h = 400, 50, 0.3, 0.02
    X = np.random.default_rng(2).multivariate_normal(np.zeros(2), cov, size=n).astype(np.float32)
    got = model.log_likelihood(X, _log_q0, n_steps=n_steps, laplacian="hutchinson")
    exact = multivariate_normal(np.zeros(2), cov).logpdf(X)
    diff = got - exact
    sd_hi = math.sqrt(n_steps * (2 * b) ** 2 * h**2 * 20 / 64)
    sd_lo = math.sqrt(n_steps * (2 * b) ** 2 * h**2 * 10 / 36)
    print(f"\n[log_likelihood hutchinson] mean error {diff.mean():.2e}, SD {diff.std():.4f} "
          f"(predicted {sd_lo:.4f}-{sd_hi:.4f}), max |error| {np.abs(diff).max():.3f}")
    # Per point: 5 SD (P ~ 6e-7 each, 400 points) - looser than the exact-Laplacian 1e-4.
    assert np.abs(diff).max() < 5 * sd_hi
    # The sample SD of 400 draws has a relative SE of 1/sqrt(800) = 3.5%: allow ±20% (~5.7 SE).
    assert 0.8 * sd_lo < diff.std() < 1.2 * sd_hi
    # Unbiased: the mean of 400 independent errors has SD 0.0474/20 = 0.0024; 5 SD.
    assert abs(diff.mean()) < 5 * sd_hi / math.sqrt(n)


def test_eam_sde_with_known_drift_matches_discrete_ou_moments():
    # Internal drift -k x and user sigma on t in [0, 2]: user drift -(k/T) x = -θ x with θ = 0.5,
    # and dX = -θ X dt + σ dW in user time. Euler-Maruyama with user step h gives exactly
    #   m_{j+1} = (1 - θh) m_j,  v_{j+1} = (1 - θh)² v_j + σ² h,
    # so the sample moments are compared with these discrete moments (pure Monte-Carlo error),
    # and those with the continuous OU moments (O(h) bias).
    k, sigma, n, n_steps = 1.0, 0.8, 20000, 100
    theta, h = k / DURATION, DURATION / n_steps
    model = _model(-k * np.eye(2), method="eam", sigma=sigma)
    m0, v0 = 1.5, 0.2
    start = (m0 + math.sqrt(v0) * np.random.default_rng(3).normal(size=(n, 2))).astype(np.float32)
    traj = model.simulate(start, 0.0, 2.0, n_steps=n_steps, seed=0)
    m, v = start.mean(0).astype(np.float64), start.var(0, ddof=1).astype(np.float64)
    for _ in range(n_steps):
        m, v = (1 - theta * h) * m, (1 - theta * h) ** 2 * v + sigma**2 * h
    got_m, got_v = traj.X[-1].mean(0), traj.X[-1].var(0, ddof=1)
    print(f"\n[eAM SDE] t=2 mean {got_m} (discrete {m}), var {got_v} (discrete {v})")
    # The start moments are used as m_0, v_0, so only the Brownian increments are random: the
    # added noise has variance v_end - (1-θh)^{2N} v_0 ≈ 0.58 - 0.03 = 0.55, so the SE of its mean
    # is sqrt(0.55/n) = 0.0053 and of the variance 0.55·sqrt(2/n) = 0.0055 (plus a start-noise
    # cross term ~0.002). Bounds 0.03 ≈ 5 SE.
    np.testing.assert_allclose(got_m, m, atol=0.03)
    np.testing.assert_allclose(got_v, v, atol=0.03)
    # Discrete vs continuous OU: relative O(θh) = 1% differences.
    e = math.exp(-2 * theta * DURATION)
    v_cont = v0 * e + sigma**2 / (2 * theta) * (1 - e)
    assert abs(v[0] - v_cont) / v_cont < 0.02
    # A different seed gives different paths; the same seed the same paths.
    again = model.simulate(start[:100], 0.0, 2.0, n_steps=10, seed=1)
    np.testing.assert_array_equal(again.X, model.simulate(start[:100], 0.0, 2.0, n_steps=10, seed=1).X)
    assert not np.array_equal(again.X, model.simulate(start[:100], 0.0, 2.0, n_steps=10, seed=2).X)


def test_simulate_input_errors(x0):
    am = _model(A_SYM)
    with pytest.raises(ValueError, match="outside the fitted time range"):
        am.simulate(x0, 0.0, 3.0)
    with pytest.raises(ValueError, match="n_steps"):
        am.simulate(x0, 0.0, 1.0, n_steps=0)
    with pytest.raises(ValueError, match="stochastic=True needs an entropic method"):
        am.simulate(x0, 0.0, 1.0, stochastic=True)
    with pytest.raises(ValueError, match="Unknown ODE solver"):
        am.simulate(x0, 0.0, 1.0, solver="leapfrog")
    with pytest.raises(ValueError, match="features but the model was fitted on"):
        am.simulate(np.zeros((5, 3)), 0.0, 1.0)
    eam = _model(A_SYM, method="eam", sigma=0.5)
    with pytest.raises(ValueError, match="forward in time only"):
        eam.simulate(x0, 2.0, 0.0)
    # Deterministic transport of an eAM fit is allowed backward.
    assert eam.simulate(x0, 2.0, 0.0, n_steps=2, stochastic=False).X.shape == (3, 200, 2)
    with pytest.raises(ValueError, match="method='am'"):
        eam.log_likelihood(x0, _log_q0)
    uam = _model(A_SYM, method="uam")
    with pytest.raises(ValueError, match="growth is defined"):
        am.growth(x0, 0.5)
    assert uam.growth(x0, 0.5).shape == (200,)


class LinearPotential(nn.Module):
    """s(x, tau) = <p, x>: a spatially constant action gradient p."""

    def __init__(self, p: np.ndarray):
        super().__init__()
        self.register_buffer("p", torch.as_tensor(p, dtype=torch.float32))

    def forward(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return x @ self.p + 0.0 * tau


def test_c_am_power_velocity_closed_form(x0):
    # Power cost q = 3 acts on user-time velocities: ∇c*(g) = |g|^{r-2} g with r = 3/2, where
    # g = ∇s_user = ∇s_internal / T. With ∇s_internal = 2p and T = 2, g = p (|p| = 1), so the
    # user velocity is p. Exact up to float32 rounding (and the cost's eps = 1e-8 in |p|).
    p = np.array([0.8, -0.6])  # |p| = 1
    model = tj.ActionMatching.from_potential(LinearPotential(2 * p), dim=2, t_range=T_RANGE, cost="power",
                                             device="cpu", run=dict(progress=False))
    expected = p
    np.testing.assert_allclose(model.velocity(x0, 1.0), np.broadcast_to(expected, (200, 2)), rtol=1e-5)
    traj = model.simulate(x0, 0.0, 2.0, n_steps=4, solver="rk4")
    np.testing.assert_allclose(traj.X[-1], x0 + expected * DURATION, rtol=1e-5, atol=1e-5)


def test_relativistic_speed_limit_is_in_user_time_units(x0):
    p = np.array([300.0, 400.0])  # |p| = 500: deep in the saturated regime, |v| = c_max/sqrt(1 + 4e-6)
    model = tj.ActionMatching.from_potential(LinearPotential(p), dim=2, t_range=T_RANGE,
                                             cost=RelativisticCost(max_speed=1.0),
                                             device="cpu", run=dict(progress=False))
    speed = np.linalg.norm(model.velocity(x0, 1.0), axis=1)
    np.testing.assert_allclose(speed, 1.0, rtol=1e-4)
