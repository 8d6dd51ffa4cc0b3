"""Hydrogen eigenstates, their superpositions and the associated Bohmian dynamics.

Units follow the Action Matching paper's code: ħ = m_e = e = ε₀ = 1, so the Bohr radius is
``a₀ = 4πε₀ħ²/(m_e e²) = 4π`` and the Hamiltonian is ``H = −½Δ − 1/(4π|x|)`` with energies
``E_n = −1/(2 a₀² n²)``.

A superposition ``ψ(x, t) = Σ_k c_k exp(−i E_k t) ψ_k(x)`` of eigenstates solves the
Schrödinger equation exactly. Its density ``q_t = |ψ|²`` is transported by the Bohmian
velocity ``v = (ħ/m) ∇ arg ψ = Im(∇ψ / ψ)``: ``∂_t q + ∇·(q v) = 0``. The score is
``∇ log q = 2 Re(∇ψ / ψ)``.

Two implementations of the eigenfunctions are provided: :func:`eigenfunction` evaluates
``R_nl(r) Y_lm(θ, φ)`` with SciPy's special functions (the reference), and
:class:`HydrogenSuperposition` evaluates the same functions in PyTorch as polynomials in
Cartesian coordinates times exponentials: smooth away from the nucleus, batched, with
closed-form gradients for velocities and scores. Any other wavefunction (a
:class:`CallableWavefunction`) gets them by automatic differentiation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from math import factorial, pi, sqrt

import numpy as np
import scipy.special as sps
import torch

__all__ = [
    "BOHR_RADIUS", "DEFAULT_STATES", "ELECTRON_MASS", "HBAR", "CallableWavefunction", "HydrogenSuperposition",
    "QuantumNumbers", "TimeLike", "Wavefunction", "beat_period", "check_quantum_numbers", "eigenfunction",
    "energy", "spherical_quadrature",
]

HBAR = 1.0
ELECTRON_MASS = 1.0
BOHR_RADIUS = 4.0 * pi
"""Bohr radius ``a₀ = 4π`` in units ħ = m_e = e = ε₀ = 1."""

DEFAULT_STATES: tuple[tuple[int, int, int], ...] = ((3, 2, -1), (2, 1, 0))
"""The paper's initial state: ψ ∝ ψ_{3,2,−1} + ψ_{2,1,0}."""

QuantumNumbers = tuple[int, int, int]
TimeLike = float | torch.Tensor


def energy(n: int) -> float:
    """Energy ``E_n = −ħ²/(2 m_e a₀² n²)`` of the hydrogen level ``n``."""
    if n < 1:
        raise ValueError(f"The principal quantum number must be at least 1, got {n}.")
    return -(HBAR**2) / (2.0 * ELECTRON_MASS * BOHR_RADIUS**2 * n**2)


def beat_period(n1: int = 3, n2: int = 2) -> float:
    """Period ``2πħ / |E_{n1} − E_{n2}|`` of the density of a superposition of levels n1 and n2.

    For the paper's levels 3 and 2 this is about 14,290.
    """
    gap = abs(energy(n1) - energy(n2))
    if gap == 0.0:
        raise ValueError("The two levels have the same energy; the density does not oscillate.")
    return 2.0 * pi * HBAR / gap


def check_quantum_numbers(n: int, l: int, m: int) -> QuantumNumbers:  # noqa: E741
    """Validate ``n ≥ 1``, ``0 ≤ l < n`` and ``|m| ≤ l``; return them as ints."""
    n, l, m = int(n), int(l), int(m)  # noqa: E741
    if n < 1 or not 0 <= l < n or abs(m) > l:
        raise ValueError(f"Invalid quantum numbers (n, l, m) = ({n}, {l}, {m}); need n ≥ 1, 0 ≤ l < n, |m| ≤ l.")
    return n, l, m


def _radial_normalisation(n: int, l: int) -> float:  # noqa: E741
    return sqrt((2.0 / (n * BOHR_RADIUS)) ** 3 * factorial(n - l - 1) / (2.0 * n * factorial(n + l)))


def eigenfunction(n: int, l: int, m: int, x: np.ndarray) -> np.ndarray:  # noqa: E741
    """Hydrogen eigenfunction ``ψ_nlm(x) = R_nl(r) Y_l^m(θ, φ)`` evaluated with SciPy.

    ``R_nl(r) = N e^{−ρ/2} ρ^l L_{n−l−1}^{(2l+1)}(ρ)`` with ``ρ = 2r/(n a₀)`` and the complex
    spherical harmonics of :func:`scipy.special.sph_harm_y` (Condon–Shortley phase included).

    Parameters
    ----------
    n, l, m
        Principal, azimuthal and magnetic quantum numbers.
    x
        Cartesian points, shape (..., 3).

    Returns
    -------
    numpy.ndarray
        Complex values, shape ``x.shape[:-1]``; normalised so that ``∫|ψ|² dx = 1``.
    """
    n, l, m = check_quantum_numbers(n, l, m)  # noqa: E741
    x = np.asarray(x, dtype=np.float64)
    r = np.linalg.norm(x, axis=-1)
    theta = np.arccos(np.clip(np.divide(x[..., 2], r, out=np.ones_like(r), where=r > 0), -1.0, 1.0))
    phi = np.mod(np.arctan2(x[..., 1], x[..., 0]), 2.0 * pi)
    rho = 2.0 * r / (n * BOHR_RADIUS)
    radial = _radial_normalisation(n, l) * np.exp(-rho / 2.0) * rho**l * sps.eval_genlaguerre(n - l - 1, 2 * l + 1, rho)
    return radial * sps.sph_harm_y(l, m, theta, phi)


def spherical_quadrature(
    decay_rate: float, n_radial: int = 80, n_polar: int = 24, n_azimuthal: int = 24
) -> tuple[np.ndarray, np.ndarray]:
    """Product quadrature for ``∫_{R³} f(x) dx`` with ``f`` decaying like ``exp(−decay_rate·r)``.

    Generalised Gauss–Laguerre nodes (weight ``r² e^{−decay_rate·r}``) in the radius,
    Gauss–Legendre nodes in ``cos θ`` and equally spaced nodes in ``φ``. For
    ``f = e^{−decay_rate·r} p(x)`` with ``p`` a polynomial (e.g. ``|ψ_nlm|²`` with
    ``decay_rate = 2/(n a₀)``) the rule is exact up to rounding once the node counts exceed
    the degrees; for other smooth decays it converges exponentially.

    Returns
    -------
    points, weights
        Nodes of shape (N, 3) and weights of shape (N,), ``N = n_radial·n_polar·n_azimuthal``.
    """
    if not decay_rate > 0:
        raise ValueError(f"decay_rate must be positive, got {decay_rate}.")
    s, w_s = sps.roots_genlaguerre(n_radial, 2.0)
    r = s / decay_rate
    w_r = np.exp(np.log(w_s) + s) / decay_rate**3  # ∫ r² g(r) dr = Σ w_r g(r)
    u, w_u = sps.roots_legendre(n_polar)
    phi = 2.0 * pi * np.arange(n_azimuthal) / n_azimuthal
    w_phi = np.full(n_azimuthal, 2.0 * pi / n_azimuthal)
    R, U, P = np.meshgrid(r, u, phi, indexing="ij")
    W = w_r[:, None, None] * w_u[None, :, None] * w_phi[None, None, :]
    sin_theta = np.sqrt(1.0 - U**2)
    points = np.stack([R * sin_theta * np.cos(P), R * sin_theta * np.sin(P), R * U], axis=-1).reshape(-1, 3)
    return points, W.reshape(-1)


class Wavefunction:
    """A complex wavefunction ``ψ(x, t)`` with its density, Bohmian velocity and score.

    Subclasses implement :meth:`scaled_psi`, returning ``(ψ̃, log_scale)`` with
    ``ψ = exp(log_scale) ψ̃`` and a real ``log_scale``; factoring out a real envelope keeps
    ``ψ̃`` representable far from the bulk of the density, where ``ψ`` itself underflows.
    All methods take ``x`` of shape (B, dim) (float64 recommended) and a time ``t`` that is a
    float or a tensor of shape (B,), and return tensors. Gradients come from automatic
    differentiation of :meth:`scaled_psi` unless :meth:`scaled_psi_gradient` is overridden.
    """

    dim: int = 3

    def scaled_psi(self, x: torch.Tensor, t: TimeLike) -> tuple[torch.Tensor, torch.Tensor]:
        """Complex ``ψ̃`` (B,) and real ``log_scale`` (B,) with ``ψ = exp(log_scale) ψ̃``."""
        raise NotImplementedError

    def psi(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Complex values ``ψ(x, t)``, shape (B,)."""
        amplitude, log_scale = self.scaled_psi(x, t)
        return amplitude * torch.exp(log_scale)

    def log_density(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """``log |ψ(x, t)|²`` (``−inf`` on nodes), shape (B,)."""
        amplitude, log_scale = self.scaled_psi(x, t)
        return torch.log(amplitude.real**2 + amplitude.imag**2) + 2.0 * log_scale

    def density(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """``|ψ(x, t)|²``, shape (B,)."""
        return torch.exp(self.log_density(x, t))

    def scaled_psi_gradient(
        self, x: torch.Tensor, t: TimeLike
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``ψ̃`` (B,), its gradient ``∇ψ̃`` (B, dim) (complex) and ``∇ log_scale`` (B, dim) or None.

        The default uses automatic differentiation of :meth:`scaled_psi`; subclasses may
        override it with closed forms.
        """
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            amplitude, log_scale = self.scaled_psi(x, t)
            grad_re = torch.autograd.grad(amplitude.real.sum(), x, retain_graph=True)[0]
            grad_im = torch.autograd.grad(amplitude.imag.sum(), x, retain_graph=log_scale.requires_grad)[0]
            grad_scale = torch.autograd.grad(log_scale.sum(), x)[0] if log_scale.requires_grad else None
        return amplitude.detach(), torch.complex(grad_re, grad_im), grad_scale

    def log_gradient(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """``∇ψ / ψ`` (complex, shape (B, dim)): real part ½ the score, imaginary part ``(m/ħ) v``."""
        amplitude, grad_amplitude, grad_scale = self.scaled_psi_gradient(x, t)
        norm2 = (amplitude.real**2 + amplitude.imag**2).clamp_min(torch.finfo(x.dtype).tiny)
        ratio = amplitude.conj()[:, None] * grad_amplitude / norm2[:, None]
        if grad_scale is not None:
            ratio = ratio + grad_scale
        return ratio

    def velocity(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Bohmian velocity ``(ħ/m) ∇ arg ψ = (ħ/m) Im(∇ψ / ψ)``, shape (B, dim)."""
        return (HBAR / ELECTRON_MASS) * self.log_gradient(x, t).imag

    def score(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        """Score ``∇ log |ψ|² = 2 Re(∇ψ / ψ)``, shape (B, dim)."""
        return 2.0 * self.log_gradient(x, t).real


class CallableWavefunction(Wavefunction):
    """Wrap a user function ``ψ(x, t)`` into a :class:`Wavefunction`.

    Parameters
    ----------
    fn
        ``fn(x: Tensor[B, dim], t: float | Tensor[B]) -> Tensor[B]`` (complex), written with
        differentiable PyTorch operations (velocities and scores use autograd).
    dim
        Dimension of ``x``.
    """

    def __init__(self, fn: Callable[[torch.Tensor, TimeLike], torch.Tensor], dim: int = 3):
        if not callable(fn):
            raise TypeError("fn must be callable as fn(x: Tensor[B, dim], t) -> complex Tensor[B].")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}.")
        self.fn = fn
        self.dim = int(dim)

    def scaled_psi(self, x: torch.Tensor, t: TimeLike) -> tuple[torch.Tensor, torch.Tensor]:
        value = self.fn(x, t)
        if not isinstance(value, torch.Tensor) or value.shape != x.shape[:1]:
            raise ValueError(
                f"The wavefunction must return a tensor of shape ({x.shape[0]},) for {x.shape[0]} points; "
                f"got {type(value).__name__} {tuple(getattr(value, 'shape', ()))}."
            )
        if not value.is_complex():
            value = torch.complex(value, torch.zeros_like(value))
        return value, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


class _EigenstateTerms:
    """Coefficients of ``ψ_nlm`` as polynomials in Cartesian coordinates.

    ``ψ_nlm(x) = A L(ρ) e^{−r/(n a₀)} S_lm(x)`` with ``ρ = 2r/(n a₀)``, ``L`` the generalised
    Laguerre polynomial and ``S_lm = r^l Y_lm`` the solid harmonic, which for ``m ≥ 0`` equals
    ``K (−1)^m (x + iy)^m Σ_k d_k z^k r^{l−m−k}`` with ``d_k`` the coefficients of the m-th
    derivative of the Legendre polynomial ``P_l`` (only even ``l − m − k`` occur, so it is a
    polynomial). For ``m < 0``, ``Y_l^m = (−1)^m conj(Y_l^{|m|})``.
    """

    def __init__(self, n: int, l: int, m: int):  # noqa: E741
        self.n, self.l, self.m = check_quantum_numbers(n, l, m)
        am = abs(m)
        self.decay = 1.0 / (n * BOHR_RADIUS)
        self.laguerre = sps.genlaguerre(n - l - 1, 2 * l + 1).coef[::-1].copy()  # ascending powers of ρ
        legendre_derivative = sps.legendre(l).deriv(am).coef[::-1]  # ascending powers of z/r
        degree = l - am
        # by parity only powers k with even l − |m| − k occur; drop rounding residue elsewhere
        self.legendre = [
            (k, float(c), (degree - k) // 2) for k, c in enumerate(legendre_derivative) if (degree - k) % 2 == 0
        ]
        harmonic_norm = sqrt((2 * l + 1) / (4.0 * pi) * factorial(l - am) / factorial(l + am))
        sign = (-1.0) ** am if m >= 0 else 1.0
        self.prefactor = _radial_normalisation(n, l) * (2.0 / (n * BOHR_RADIUS)) ** l * harmonic_norm * sign

    def evaluate(
        self, x: torch.Tensor, r: torch.Tensor, envelope_rate: float, gradient: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``φ = ψ_nlm(x) e^{envelope_rate · r}`` (complex, (B,)) and, if asked, ``∇φ`` (B, 3)."""
        rho = 2.0 * self.decay * r
        laguerre = torch.zeros_like(r)
        d_laguerre = torch.zeros_like(r)
        for c in self.laguerre[::-1]:  # Horner, with the derivative alongside
            d_laguerre = d_laguerre * rho + laguerre
            laguerre = laguerre * rho + float(c)
        rate = self.decay - envelope_rate
        envelope = self.prefactor * torch.exp(-rate * r)
        radial = envelope * laguerre
        r2 = r**2
        z = x[:, 2]
        polar = torch.zeros_like(r)
        for power_z, c, power_r2 in self.legendre:
            polar = polar + c * z**power_z * r2**power_r2
        am = abs(self.m)
        w = torch.complex(x[:, 0], (1.0 if self.m >= 0 else -1.0) * x[:, 1])
        azimuthal = w**am
        value = azimuthal * (radial * polar)
        if not gradient:
            return value, None
        # ∇(radial) = radial'(r) x/r, ∇(w^|m|) = |m| w^(|m|-1) (1, ±i, 0), ∇(polar) termwise
        d_radial = envelope * (2.0 * self.decay * d_laguerre - rate * laguerre)
        grad_polar = torch.zeros_like(x)
        for power_z, c, power_r2 in self.legendre:
            if power_r2 > 0:
                grad_polar = grad_polar + (c * power_r2 * 2.0 * z**power_z * r2 ** (power_r2 - 1))[:, None] * x
            if power_z > 0:
                grad_polar[:, 2] = grad_polar[:, 2] + c * power_z * z ** (power_z - 1) * r2**power_r2
        radial_polar = radial * polar
        grad = (azimuthal * d_radial * polar / r)[:, None] * x + azimuthal[:, None] * radial[:, None] * grad_polar
        if am > 0:
            d_azimuthal = am * w ** (am - 1) * radial_polar
            grad_w = torch.tensor([1.0, 1j if self.m >= 0 else -1j, 0.0], dtype=value.dtype, device=x.device)
            grad = grad + d_azimuthal[:, None] * grad_w
        return value, grad


class HydrogenSuperposition(Wavefunction):
    """A normalised superposition of hydrogen eigenstates with exact time evolution.

    ``ψ(x, t) = Σ_k c_k exp(−i E_{n_k} t / ħ) ψ_{n_k l_k m_k}(x)``, ``Σ_k |c_k|² = 1``.

    Parameters
    ----------
    states
        Quantum numbers ``(n, l, m)`` of the components (distinct). Default: the paper's
        ``ψ_{3,2,−1} + ψ_{2,1,0}``.
    coefficients
        Complex amplitudes, one per state (normalised internally). Default: equal.

    Notes
    -----
    Internally ``ψ`` is evaluated as ``exp(−κ r) ψ̃`` with ``κ = 1/(n_max a₀)`` the slowest
    decay rate, so log-densities, velocities and scores stay finite far from the nucleus.
    """

    dim = 3

    def __init__(
        self,
        states: Sequence[Sequence[int]] = DEFAULT_STATES,
        coefficients: Sequence[complex] | None = None,
    ):
        self.states = tuple(check_quantum_numbers(*s) for s in states)
        if not self.states:
            raise ValueError("At least one eigenstate is needed.")
        if len(set(self.states)) != len(self.states):
            raise ValueError(f"States must be distinct, got {self.states}.")
        if coefficients is None:
            coeffs = np.ones(len(self.states), dtype=np.complex128)
        else:
            coeffs = np.asarray(coefficients, dtype=np.complex128)
        if coeffs.shape != (len(self.states),):
            raise ValueError(f"Need one coefficient per state ({len(self.states)}), got shape {coeffs.shape}.")
        norm = np.sqrt(np.sum(np.abs(coeffs) ** 2))
        if not norm > 0:
            raise ValueError("The coefficients must not all be zero.")
        self.coefficients = coeffs / norm
        self.energies = np.array([energy(n) for n, _, _ in self.states])
        self._terms = [_EigenstateTerms(*s) for s in self.states]
        self.envelope_rate = min(term.decay for term in self._terms)

    def __repr__(self) -> str:
        parts = " + ".join(f"({c:.3g})ψ{s}" for c, s in zip(self.coefficients, self.states))
        return f"HydrogenSuperposition({parts})"

    def phases(self, t: TimeLike) -> np.ndarray | torch.Tensor:
        """``c_k exp(−i E_k t/ħ)``; shape (K,) for a float ``t``, (B, K) for a tensor (B,)."""
        if isinstance(t, torch.Tensor):
            tt = t.detach().to(torch.float64).reshape(-1, 1)
            energies = torch.as_tensor(self.energies, device=tt.device)
            coeffs = torch.as_tensor(self.coefficients, device=tt.device)
            return coeffs * torch.exp(-1j * energies * tt / HBAR)
        return self.coefficients * np.exp(-1j * self.energies * float(t) / HBAR)

    def _components(
        self, x: torch.Tensor, t: TimeLike, gradient: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        r = torch.linalg.vector_norm(x, dim=1)
        phases = self.phases(t)
        complex_dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        amplitude = torch.zeros(x.shape[0], dtype=complex_dtype, device=x.device)
        grad = torch.zeros(x.shape, dtype=complex_dtype, device=x.device) if gradient else None
        for k, term in enumerate(self._terms):
            if isinstance(phases, torch.Tensor):
                phase = phases[:, k].to(complex_dtype)
                phase_column = phase[:, None]
            else:
                phase = phase_column = complex(phases[k])
            value, term_grad = term.evaluate(x, r, self.envelope_rate, gradient)
            amplitude = amplitude + phase * value
            if gradient:
                grad = grad + phase_column * term_grad
        return amplitude, grad, r

    def scaled_psi(self, x: torch.Tensor, t: TimeLike) -> tuple[torch.Tensor, torch.Tensor]:
        amplitude, _, r = self._components(x, t, gradient=False)
        return amplitude, -self.envelope_rate * r

    def scaled_psi_gradient(
        self, x: torch.Tensor, t: TimeLike
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Closed-form ``ψ̃``, ``∇ψ̃`` and ``∇ log_scale = −κ x/r`` (no autograd, hence fast)."""
        amplitude, grad, r = self._components(x.detach(), t, gradient=True)
        return amplitude, grad, -self.envelope_rate * x.detach() / r[:, None]

    def psi_reference(self, x: np.ndarray, t: float) -> np.ndarray:
        """``ψ(x, t)`` from SciPy's special functions (:func:`eigenfunction`), complex (...,)."""
        phases = self.phases(float(t))
        return sum(phases[k] * eigenfunction(*s, x) for k, s in enumerate(self.states))

    def mean_radius(self) -> float:
        """Exact ``E[|x|]`` under ``|ψ|²`` (time-independent).

        Uses ``⟨r⟩_{nl} = a₀ (3n² − l(l+1)) / 2``; cross terms vanish unless two states share
        ``(l, m)``, which this closed form does not handle.
        """
        self._require_distinct_lm()
        return float(sum(
            abs(c) ** 2 * BOHR_RADIUS * (3 * n**2 - ell * (ell + 1)) / 2.0
            for c, (n, ell, _) in zip(self.coefficients, self.states)
        ))

    def mean_squared_radius(self) -> float:
        """Exact ``E[|x|²]`` under ``|ψ|²``: ``⟨r²⟩_{nl} = a₀² n² (5n² + 1 − 3l(l+1)) / 2``."""
        self._require_distinct_lm()
        return float(sum(
            abs(c) ** 2 * BOHR_RADIUS**2 * n**2 * (5 * n**2 + 1 - 3 * ell * (ell + 1)) / 2.0
            for c, (n, ell, _) in zip(self.coefficients, self.states)
        ))

    def expectation(
        self, fn: Callable[[np.ndarray], np.ndarray], t: float, n_radial: int = 80, n_angular: int = 24
    ) -> complex:
        """``E_{|ψ_t|²}[fn(x)]`` by quadrature (see :func:`spherical_quadrature`).

        Parameters
        ----------
        fn
            Vectorised function of points (N, 3) returning (N,) values.
        t
            Time.
        n_radial, n_angular
            Quadrature nodes in ``r`` and in each angle.
        """
        points, weights = spherical_quadrature(2.0 * self.envelope_rate, n_radial, n_angular, n_angular)
        density = np.abs(self.psi_reference(points, t)) ** 2
        return complex(np.sum(weights * density * fn(points)))

    def _require_distinct_lm(self) -> None:
        lm = [(ell, m) for _, ell, m in self.states]
        if len(set(lm)) != len(lm):
            raise ValueError("Closed-form radial moments need states with distinct (l, m).")
