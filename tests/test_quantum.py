"""Ground-truth tests of the quantum subpackage (hydrogen experiment of the Action Matching paper).

Every check compares against an independent reference: SciPy's special functions, exact
quadrature, closed-form moments, finite differences of the wavefunction, the analytic free
Gaussian wave packet, or exact stationary laws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import trajinfer as tj
from trajinfer.quantum import (
    BOHR_RADIUS,
    CallableWavefunction,
    DatasetPath,
    HydrogenPath,
    HydrogenSuperposition,
    SnapshotSeries,
    WavefunctionPath,
    annealed_langevin,
    average_mmd,
    beat_period,
    bohmian_transport,
    eigenfunction,
    energy,
    evaluation_times,
    fit_score_model,
    generate_dataset,
    metropolis,
    paper_mmd,
    relative_velocity_error,
    simulate_action_matching,
    spherical_quadrature,
)
from trajinfer.training import DivergenceError

pytestmark = pytest.mark.usefixtures("single_thread")


STATES = [(1, 0, 0), (2, 0, 0), (2, 1, 0), (2, 1, 1), (2, 1, -1), (3, 2, -1), (3, 2, 2), (3, 1, -1), (4, 3, -2)]


def _points(n: int, scale: float = 80.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=scale, size=(n, 3))


# --------------------------------------------------------------------------- constants
def test_units_energies_and_beat_period() -> None:
    # a0 = 4π ε0 ħ² / (m e²) with all four constants 1; E_n = -1 / (2 a0² n²)
    assert BOHR_RADIUS == pytest.approx(4 * math.pi)
    assert energy(1) == pytest.approx(-1.0 / (2 * (4 * math.pi) ** 2))
    assert energy(3) == pytest.approx(energy(1) / 9)
    # the paper's T = 14,000 is just under one beat period of levels 3 and 2
    assert beat_period(3, 2) == pytest.approx(2 * math.pi / (energy(3) - energy(2)))
    assert 14_000 < beat_period(3, 2) < 14_400
    with pytest.raises(ValueError):
        eigenfunction(2, 2, 0, _points(2))
    with pytest.raises(ValueError):
        HydrogenSuperposition([(3, 1, 2)])


# --------------------------------------------------------------------------- eigenfunctions
@pytest.mark.parametrize("state", STATES)
def test_torch_eigenfunction_matches_scipy(state: tuple[int, int, int]) -> None:
    """Cartesian-polynomial (torch) and spherical (scipy.special) forms agree to rounding."""
    x = _points(300)
    reference = eigenfunction(*state, x)
    value = HydrogenSuperposition([state]).psi(torch.as_tensor(x), 0.0).numpy()
    assert np.max(np.abs(value - reference)) <= 1e-12 * np.max(np.abs(reference))


def test_orthonormality_by_exact_quadrature() -> None:
    """<ψ_a|ψ_b> = δ_ab. The product rule is exact here (Gauss–Laguerre in r with the pair's
    decay rate, Gauss–Legendre in cos θ, uniform in φ: all integrands are polynomials times that
    exponential, of degrees far below the node counts), so only rounding (~1e-14) remains."""
    for i, a in enumerate(STATES):
        for b in STATES[i:]:
            rate = (1.0 / a[0] + 1.0 / b[0]) / BOHR_RADIUS
            points, weights = spherical_quadrature(rate, n_radial=12, n_polar=12, n_azimuthal=12)
            overlap = np.sum(weights * np.conj(eigenfunction(*a, points)) * eigenfunction(*b, points))
            assert abs(overlap - (1.0 if a == b else 0.0)) < 1e-10, (a, b, overlap)


def test_superposition_stays_normalised() -> None:
    psi = HydrogenSuperposition()
    np.testing.assert_allclose(np.abs(psi.coefficients) ** 2, [0.5, 0.5])
    for t in (0.0, 3000.0, 14_000.0):
        assert psi.expectation(lambda p: np.ones(len(p)), t).real == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("state", [(1, 0, 0), (2, 1, -1), (3, 2, -1), (3, 0, 0), (4, 3, 2)])
def test_eigen_equation_residual(state: tuple[int, int, int]) -> None:
    """−½Δψ − ψ/(4π r) = E_n ψ with a 7-point central-difference Laplacian.

    Points lie at r > 2; the shortest length scale there is min(r, a0) ≥ 2, so with h = 0.01
    the truncation error is O((h/2)²/12) ≈ 2e-6 of the terms of Hψ and rounding ~1e-16/h² =
    1e-12 of |ψ| (|E_n| ≥ 2e-4): the tolerance 1e-4 of |E_n ψ| has a wide margin, while the
    neighbouring level's energy misses by more than 10%.
    """
    n = state[0]
    x = _points(200, scale=n * BOHR_RADIUS, seed=n)
    x = x[np.linalg.norm(x, axis=1) > 2.0]  # the Coulomb cusp at r = 0 is not smooth
    h = 0.01
    psi = eigenfunction(*state, x)
    laplacian = -6.0 * psi
    for axis in range(3):
        shift = np.zeros(3)
        shift[axis] = h
        laplacian = laplacian + eigenfunction(*state, x + shift) + eigenfunction(*state, x - shift)
    laplacian /= h**2
    h_psi = -0.5 * laplacian - psi / (4 * math.pi * np.linalg.norm(x, axis=1))
    scale = np.sqrt(np.mean(np.abs(energy(n) * psi) ** 2))
    assert np.max(np.abs(h_psi - energy(n) * psi)) < 1e-4 * scale
    assert np.sqrt(np.mean(np.abs(h_psi - energy(n + 1) * psi) ** 2)) > 0.1 * scale


# --------------------------------------------------------------------------- velocity, score, continuity
def _fd_log_gradient(psi_fn, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central differences of ψ divided by ψ: ∇ψ/ψ (complex), without phase unwrapping."""
    grad = np.stack([(psi_fn(x + h * e) - psi_fn(x - h * e)) / (2 * h) for e in np.eye(3)], axis=-1)
    return grad / psi_fn(x)[:, None]


@pytest.mark.parametrize("t", [0.0, 5000.0])
def test_velocity_and_score_match_finite_differences(t: float) -> None:
    """Autograd (torch) v = Im(∇ψ/ψ) and ∇log|ψ|² = 2Re(∇ψ/ψ) against central differences of
    the scipy wavefunction; h = 1e-4 gives relative errors ~(h/L)² + 1e-16 L/h < 1e-8."""
    psi = HydrogenSuperposition()
    x = _points(300, seed=1)
    ratio = _fd_log_gradient(lambda p: psi.psi_reference(p, t), x)
    xt = torch.as_tensor(x)
    velocity = psi.velocity(xt, t).numpy()
    score = psi.score(xt, t).numpy()
    for estimate, reference in ((velocity, ratio.imag), (score, 2 * ratio.real)):
        err = np.linalg.norm(estimate - reference, axis=1) / np.linalg.norm(reference, axis=1)
        assert np.max(err) < 1e-6
    # batched times give the same answer as a scalar time
    batched = psi.velocity(xt, torch.full((len(x),), t, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(batched, velocity, rtol=1e-12, atol=1e-15)


def test_closed_form_gradient_matches_autograd() -> None:
    """HydrogenSuperposition's closed-form ∇ψ̃ equals autograd through its own ψ̃ (the
    generic path every user wavefunction takes), for several superpositions and times."""
    x = torch.as_tensor(_points(200, seed=3))
    for states in ([(3, 2, -1), (2, 1, 0)], [(4, 3, -2), (3, 1, 1), (1, 0, 0)], [(4, 2, 0), (2, 0, 0)]):
        psi = HydrogenSuperposition(states, coefficients=np.arange(1, len(states) + 1) * np.exp(1j * np.arange(len(states))))
        for t in (0.0, torch.linspace(0.0, 9000.0, 200, dtype=torch.float64)):
            closed = psi.scaled_psi_gradient(x, t)
            generic = tj.quantum.Wavefunction.scaled_psi_gradient(psi, x, t)
            for a, b in zip(closed, generic):
                assert torch.allclose(a, b, rtol=1e-12, atol=1e-14 * b.abs().max().item())


def test_log_density_and_score_stay_finite_far_out() -> None:
    """Far from the nucleus |ψ|² underflows, yet log-density, score and velocity are finite and
    the score tends to the outermost shell's −2x/(n_max a0 r)."""
    psi = HydrogenSuperposition()
    x = torch.tensor([[30_000.0, 10_000.0, 25_000.0]], dtype=torch.float64)
    assert psi.density(x, 0.0).item() == 0.0
    assert torch.isfinite(psi.log_density(x, 0.0)).all()
    r = x.norm()
    expected = -2.0 * x[0] / (3 * BOHR_RADIUS * r)  # corrections O(n/r) ≈ 1e-4 against 0.05
    np.testing.assert_allclose(psi.score(x, 0.0)[0].numpy(), expected.numpy(), rtol=5e-3)
    assert torch.isfinite(psi.velocity(x, 0.0)).all()


def test_continuity_equation() -> None:
    """∂_t|ψ|² + ∇·(|ψ|² v) = 0 at random points, all derivatives by central differences of the
    torch density and velocity. Time varies on the scale 1/ΔE ≈ 2,300, space on ≈ 10, so the
    step sizes (1 and 1e-2) leave O(1e-6) truncation; the tolerance is 1e-4 of ∂_t|ψ|²."""
    psi = HydrogenSuperposition()
    x = torch.as_tensor(_points(300, seed=2))
    t, ht, hx = 2000.0, 1.0, 1e-2
    d_rho_dt = (psi.density(x, t + ht) - psi.density(x, t - ht)) / (2 * ht)

    def flux(p: torch.Tensor) -> torch.Tensor:
        return psi.density(p, t)[:, None] * psi.velocity(p, t)

    divergence = sum(
        (flux(x + hx * e)[:, i] - flux(x - hx * e)[:, i]) / (2 * hx) for i, e in enumerate(torch.eye(3, dtype=x.dtype))
    )
    scale = d_rho_dt.abs().max()
    assert scale > 0
    assert (d_rho_dt + divergence).abs().max() < 1e-4 * scale


# --------------------------------------------------------------------------- sampling
def test_metropolis_matches_exact_radial_moments() -> None:
    """E[r] and E[r²] of the paper's |ψ|² (closed forms, cross terms vanish for distinct m),
    within 4 standard errors of 3,000 samples from 3,000 independent chains."""
    psi = HydrogenSuperposition()
    x = metropolis(lambda p: psi.log_density(p, 0.0), 3000, 3, n_burnin=600, init_scale=65.0, seed=3)
    r = x.norm(dim=1).numpy()
    assert psi.mean_radius() == pytest.approx(BOHR_RADIUS * (0.5 * 10.5 + 0.5 * 5.0))
    assert abs(r.mean() - psi.mean_radius()) < 4 * r.std() / math.sqrt(len(r))
    assert abs((r**2).mean() - psi.mean_squared_radius()) < 4 * (r**2).std() / math.sqrt(len(r))


def test_bohmian_transport_carries_samples_of_q0_to_samples_of_qt() -> None:
    """Transported samples match the quadrature dipole <x>(t), <y>(t) of |ψ_t|² (4 standard
    errors), which rotates by ~19 Bohr-scaled units (> 8 standard errors) over half a period."""
    psi = HydrogenSuperposition()
    n = 2000
    x0 = metropolis(lambda p: psi.log_density(p, 0.0), n, 3, n_burnin=600, init_scale=65.0, seed=4)
    T = 14_000.0
    times = np.linspace(0.0, T / 2, 21)
    out = bohmian_transport(psi, x0, times, substeps=4)
    assert out.shape == (21, n, 3) and out.dtype == torch.float32
    for k in (0, 10, 20):
        xk = out[k].double().numpy()
        se = xk.std(axis=0) / math.sqrt(n)
        for axis in (0, 1, 2):
            exact = psi.expectation(lambda p, axis=axis: p[:, axis], times[k]).real
            assert abs(xk[:, axis].mean() - exact) < 4 * se[axis], (k, axis)
    start_mean = psi.expectation(lambda p: p[:, 0], 0.0).real
    assert abs(out[20, :, 0].double().mean().item() - start_mean) > 8 * se[0]


def test_ode_solver_keyword_is_solver() -> None:
    """The ODE solver is ``solver=``; ``method=`` still works for one release, with a FutureWarning."""
    psi = HydrogenSuperposition()
    x0, times = torch.as_tensor(_points(5)), np.array([0.0, 50.0])
    new = bohmian_transport(psi, x0, times, substeps=2, solver="midpoint")
    with pytest.warns(FutureWarning, match="solver"):
        old = bohmian_transport(psi, x0, times, substeps=2, method="midpoint")
    torch.testing.assert_close(old, new, rtol=0, atol=0)

    class Recorder:
        def simulate(self, x0, t_start, t_end, **params):
            self.params = params
            return tj.Trajectories(times=np.array([t_start, t_end]), X=np.stack([x0, x0]), log_weights=np.zeros((2, len(x0))))

    recorder = Recorder()
    simulate_action_matching(recorder, np.zeros((3, 3)), (0.0, 1.0), [1.0], n_steps=4, solver="rk4")
    assert recorder.params == {"n_steps": 4, "solver": "rk4", "progress": False}
    with pytest.warns(FutureWarning, match="solver"):
        simulate_action_matching(recorder, np.zeros((3, 3)), (0.0, 1.0), [1.0], method="midpoint")
    assert recorder.params["solver"] == "midpoint"


def test_generate_dataset_shuffles_each_time_independently() -> None:
    psi = HydrogenSuperposition()
    options = {"n_burnin": 200, "init_scale": 65.0}
    kwargs = dict(t_range=(0.0, 700.0), n_steps=5, substeps=2, seed=5, metropolis_kwargs=options)
    plain = generate_dataset(psi, 300, shuffle=False, **kwargs)
    shuffled = generate_dataset(psi, 300, shuffle=True, **kwargs)
    np.testing.assert_allclose(shuffled.times, np.linspace(0, 700, 6))
    for k in range(6):
        a, b = plain.samples[k].numpy(), shuffled.samples[k].numpy()
        np.testing.assert_array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)])  # same set of samples
    # a particle's index at one time says nothing about its index at the next
    rows = [torch.cdist(shuffled.samples[k + 1], plain.samples[k + 1]).argmin(dim=1) for k in range(5)]
    pairs_kept = np.mean([(rows[k] == rows[k + 1]).float().mean().item() for k in range(4)])
    assert pairs_kept < 0.05


# --------------------------------------------------------------------------- paths
def test_dataset_path_time_selection() -> None:
    times = np.array([0.0, 10.0, 20.0, 40.0])
    samples = torch.arange(4, dtype=torch.float32)[:, None, None].expand(4, 50, 2).clone()  # value = time index
    data = SnapshotSeries(times, samples)
    nearest = DatasetPath(data)
    assert nearest.t_range == (0.0, 40.0) and nearest.dim == 2
    tau = torch.tensor([0.0, 0.12, 0.13, 0.5, 0.74, 0.76, 1.0])  # user times 0, 4.8, 5.2, 20, 29.6, 30.4, 40
    np.testing.assert_array_equal(nearest.time_index(tau).numpy(), [0, 0, 1, 2, 2, 3, 3])
    x = nearest.sample(tau, torch.Generator().manual_seed(0))
    assert x.shape == (7, 2) and x.dtype == torch.float32
    np.testing.assert_array_equal(x[:, 0].numpy(), [0, 0, 1, 2, 2, 3, 3])
    # bracket: at user time 35 (λ = 0.75 between 20 and 40) the later time is drawn 75% of the time
    bracket = DatasetPath(data, time_selection="bracket")
    k = bracket.time_index(torch.full((20_000,), 35.0 / 40.0), torch.Generator().manual_seed(1))
    assert set(k.unique().tolist()) == {2, 3}
    assert (k == 3).float().mean().item() == pytest.approx(0.75, abs=0.015)
    with pytest.raises(ValueError):
        DatasetPath(data, time_selection="linear")


def _gaussian_packet(sigma0: float, k: float):
    """Free particle (V = 0) Gaussian packet: |ψ_t|² = N(k t, σ_t²), σ_t² = σ0²(1 + t²/(4σ0⁴))."""

    def psi(x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        s = sigma0 + 1j * t / (2 * sigma0)
        xs = x[:, 0]
        return (2 * math.pi) ** -0.25 * s**-0.5 * torch.exp(-((xs - k * t) ** 2) / (4 * sigma0 * s) + 1j * (k * xs - k**2 * t / 2))

    return psi


def test_wavefunction_path_on_free_gaussian_packet() -> None:
    """Any user ψ(x, t): the autograd Bohmian velocity equals the analytic
    v = k + (x − kt) t/(4σ0⁴ + t²), and Metropolis + transport reproduce N(kt, σ_t²)."""
    sigma0, k, t_end = 1.0, 0.5, 4.0
    fn = _gaussian_packet(sigma0, k)
    wave = CallableWavefunction(fn, dim=1)
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    exact = k + (x[:, 0] - k * 1.5) * 1.5 / (4 * sigma0**4 + 1.5**2)
    np.testing.assert_allclose(wave.velocity(x, 1.5)[:, 0].numpy(), exact.numpy(), rtol=1e-10)
    np.testing.assert_allclose(wave.score(x, 0.0)[:, 0].numpy(), (-x[:, 0] / sigma0**2).numpy(), rtol=1e-10)

    path = WavefunctionPath(
        fn, (0.0, t_end), n_steps=8, n_samples=4000, dim=1, seed=6,
        metropolis_kwargs={"init_scale": 1.0, "step_size": 1.0, "n_burnin": 300, "thin": 10},
    )
    assert path.dim == 1 and path.t_range == (0.0, t_end) and len(path.times) == 9
    end = path.data.at(t_end)[:, 0]
    sigma_t = sigma0 * math.sqrt(1 + t_end**2 / (4 * sigma0**4))
    assert abs(end.mean() - k * t_end) < 4 * sigma_t / math.sqrt(len(end))
    assert end.std() == pytest.approx(sigma_t, rel=0.06)  # 4 standard errors of a std estimate


# --------------------------------------------------------------------------- baselines
def _gaussian_series(n_times: int = 11, n: int = 2000) -> tuple[SnapshotSeries, np.ndarray]:
    rng = np.random.default_rng(7)
    times = np.linspace(0.0, 1.0, n_times)
    std = np.array([1.0, 2.0, 0.5])
    means = np.stack([3 * times, np.zeros_like(times), -times], axis=1)
    samples = means[:, None, :] + std * rng.standard_normal((n_times, n, 3))
    return SnapshotSeries(times, torch.as_tensor(samples, dtype=torch.float32)), std


@pytest.mark.parametrize("method", ["sm", "ssm"])
def test_score_matching_recovers_gaussian_scores(method: str) -> None:
    """On moving Gaussians N(μ(t), diag σ²) the fitted score approaches −(x − μ(t))/σ²;
    relative error < 0.25 where the zero field scores 1 (and the data-free init is far off)."""
    data, std = _gaussian_series()
    model = fit_score_model(
        DatasetPath(data), method, hidden_dims=(64, 64), n_iter=250, batch_size=128, lr=3e-3,
        device="cpu", seed=0, progress=False,
    )
    errors = []
    for k in (2, 8):
        x = data.samples[k]
        mean = np.array([3 * data.times[k], 0.0, -data.times[k]])
        exact = -(x.numpy() - mean) / std**2
        estimate = model.score(x, data.times[k]).numpy()
        errors.append(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))
    assert max(errors) < 0.25


def test_score_matching_leaves_the_global_random_state_alone() -> None:
    """fit_score_model seeds its own generators: torch's global stream is as the caller left it,
    and the same seed still gives the same network."""
    data, _ = _gaussian_series(n_times=3, n=200)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    fits = [
        fit_score_model(DatasetPath(data), "ssm", hidden_dims=(16,), n_iter=2, batch_size=16, device="cpu", seed=5, progress=False)
        for _ in range(2)
    ]
    assert torch.equal(torch.random.get_rng_state(), before)
    for key, value in fits[0].network.state_dict().items():
        torch.testing.assert_close(fits[1].network.state_dict()[key], value, rtol=0, atol=0)


def test_diverging_score_matching_raises() -> None:
    """A huge learning rate overflows the loss at once: the fit stops with a DivergenceError."""
    data, _ = _gaussian_series(n_times=3, n=200)
    with pytest.raises(DivergenceError, match="before the divergence") as info:
        fit_score_model(DatasetPath(data), "ssm", hidden_dims=(16, 16), n_iter=50, batch_size=32, lr=1e6, device="cpu", progress=False)
    assert info.value.reason == "non-finite loss" and info.value.iteration < 50


def test_annealed_langevin_matches_exact_ula_stationary_law() -> None:
    """For a Gaussian target N(0, σ²) the unadjusted step x ← x + (δ/2)s + √δ ε is an AR(1)
    with stationary variance σ²/(1 − δ/(4σ²)); with δ = σ² that is 4σ²/3 (not σ²)."""
    sigma = 2.0
    x0 = torch.full((20_000, 1), 10.0)
    traj = annealed_langevin(lambda x, t: -x / sigma**2, x0, np.arange(40.0), step_size=sigma**2, n_inner=5, seed=0)
    assert traj.X.shape == (40, 20_000, 1)
    final = traj.X[-1, :, 0]
    assert abs(final.mean()) < 4 * 0.017  # std of the mean ≈ 2.3/√20,000
    assert final.var() == pytest.approx(4 * sigma**2 / 3, rel=0.03)
    recorded = annealed_langevin(lambda x, t: -x / sigma**2, x0, np.arange(40.0), step_size=1.0, record_times=[0.0, 20.2], seed=0)
    np.testing.assert_array_equal(recorded.times, [0.0, 20.0])


# --------------------------------------------------------------------------- evaluation
def test_paper_mmd_is_the_authors_unbiased_three_kernel_statistic() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(scale=60, size=(40, 3)), rng.normal(scale=60, size=(30, 3)) + 20

    def kernel(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return 3 * np.exp(-1e-4 * ((u[:, None] - v[None]) ** 2).sum(-1))

    kaa, kbb = kernel(a, a), kernel(b, b)
    expected = (
        (kaa.sum() - np.trace(kaa)) / (40 * 39) + (kbb.sum() - np.trace(kbb)) / (30 * 29) - 2 * kernel(a, b).mean()
    )
    assert paper_mmd(a, b) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(evaluation_times(0.0, 14_000.0), 1400.0 * np.arange(1, 11))
    series = SnapshotSeries(np.array([0.0, 1.0]), torch.as_tensor(np.stack([a[:30], b]), dtype=torch.float32))
    mean, per_time = average_mmd([a[:30], a[:30]], series, [0.0, 1.0])
    assert mean == pytest.approx(np.mean(np.abs(per_time)))
    assert per_time[1] == pytest.approx(paper_mmd(a[:30], series.at(1.0)), rel=1e-6)


def test_relative_velocity_error_limits() -> None:
    psi = HydrogenSuperposition()
    series = SnapshotSeries(np.array([0.0, 100.0]), torch.as_tensor(_points(200)[None].repeat(2, 0), dtype=torch.float32))

    def exact(x: np.ndarray, t: float) -> np.ndarray:
        return psi.velocity(torch.as_tensor(x, dtype=torch.float64), t).numpy()

    assert relative_velocity_error(exact, psi, series, [0.0, 100.0]) < 1e-12
    assert relative_velocity_error(lambda x, t: np.zeros_like(x), psi, series, [100.0]) == pytest.approx(1.0)
    assert relative_velocity_error(lambda x, t: 2 * exact(x, t), psi, series, [100.0]) == pytest.approx(1.0, rel=1e-6)


# --------------------------------------------------------------------------- end to end
def test_action_matching_learns_bohmian_velocity_end_to_end() -> None:
    """Fit AM on a cheap 1001-time dataset and compare with the exact Bohmian velocity.

    ψ ∝ ψ_{2,1,0} + ψ_{1,0,0} is a sum of real eigenfunctions, so its Bohmian velocity is an
    exact gradient field (v = F'(u)∇u with u = ψ_210/ψ_100), the field Action Matching
    identifies, and a perfect fit has error 0. The zero field has relative error 1 (an unfitted
    residual potential, ∇s ≈ x, is far worse). 400 iterations on 300 samples per time reach
    0.53–0.58 over six seeds (spread ≈ 0.02); requiring < 0.7 leaves a margin of several spreads
    while demanding that the fit remove a third of the zero field's error.
    """
    states = [(2, 1, 0), (1, 0, 0)]
    t_end = 0.5 * beat_period(2, 1)
    path = HydrogenPath(
        states, t_end=t_end, n_steps=1000, n_samples=300, substeps=1, seed=9,
        metropolis_kwargs={"n_burnin": 500},
    )
    assert len(path.times) == 1001
    est = tj.ActionMatching(
        potential="residual", hidden_dims=(64, 64), n_iter=400, batch_size=512, lr=1e-2, seed=0,
        run=tj.RunConfig(device="cpu", progress=False),
    ).fit(path)
    times = evaluation_times(0.0, t_end, 5)
    error = relative_velocity_error(est.velocity, path.wavefunction, path.data, times)
    assert error < 0.7
