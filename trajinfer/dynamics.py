"""The fitted dynamics: a potential on a time interval, apart from the trainer that fitted it.

:class:`Dynamics` is what :meth:`trajinfer.ActionMatching.fit` produces (``dynamics_``) and
what the quantum and vision kits and the ``tl`` front end evaluate: velocities, actions,
growth rates, simulated trajectories, likelihoods and the held-out Action Matching loss. It
saves and loads through its own file format.

Internal time. The potential takes ``tau = (t − t0) / T`` in [0, 1], where ``(t0, t0 + T)`` is
the time range in the user's units; every public method takes and returns user units.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._defaults import BATCH_SIZE, METHODS
from ._deprecation import UNSET
from ._device import resolve_device
from ._progress import progress_bar
from ._random import SeedLike, as_int_seed, torch_generator
from ._validation import as_float_tensor, as_time_tensor, check_time_in_range
from .costs import KineticCost, QuadraticCost, resolve_cost
from .derivatives import potential_derivatives, resolve_laplacian
from .integrators import integrate_ode, integrate_sde
from .losses import ActionMatchingLoss, is_entropic, is_unbalanced
from .networks import MLPPotential, build_potential
from .paths import MarginalPath
from .persistence import DYNAMICS, read_payload, to_plain, write_payload
from .time_sampling import QuasiUniformTimeProposal
from .trajectories import Trajectories

__all__ = ["Dynamics", "SigmaLike", "internal_diffusion_sq"]

SigmaLike = float | Callable[[torch.Tensor], torch.Tensor] | None


def internal_diffusion_sq(sigma: SigmaLike, t_range: tuple[float, float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """σ² as a function of internal time: ``dX = σ dW_t`` with ``t = t0 + T tau`` gives ``σ_tau² = σ² T``.

    Parameters
    ----------
    sigma
        Diffusion coefficient in user units of x per sqrt(time): a number or a callable ``σ(t)``
        of a tensor of user times.
    t_range
        Time range ``(t0, t0 + T)`` in user units.
    """
    t0, duration = t_range[0], t_range[1] - t_range[0]

    def diffusion_sq(tau: torch.Tensor) -> torch.Tensor:
        t_user = t0 + tau * duration
        if callable(sigma):
            value = torch.as_tensor(sigma(t_user), dtype=t_user.dtype, device=t_user.device).expand_as(t_user)
        else:
            value = torch.full_like(t_user, float(sigma))
        return value**2 * duration

    return diffusion_sq


def _solver(solver: str, method: Any, name: str) -> str:
    """The ODE solver, taking the deprecated ``method`` keyword for one release."""
    if method is UNSET:
        return solver
    warnings.warn(
        f"{name}(method=...) is deprecated and will be removed in the next release: the ODE solver is now "
        f"{name}(solver={method!r}) ('method' names the Action Matching variant).", FutureWarning, stacklevel=3,
    )
    return method


class Dynamics:
    """Fitted dynamics: ``dx = ∇c*(∇s_t(x)) dt (+ σ dW)``, with ``d log w = s_t(x)/δ² dt`` when unbalanced.

    Parameters
    ----------
    potential
        Module ``(x (B, d), tau (B,)) -> (B,)``: the action in internal time ``tau`` in [0, 1].
    dim
        Dimension of ``x``.
    t_range
        Time range in user units, mapped to internal time [0, 1].
    method
        The Action Matching variant the potential solves: ``"am"``, ``"eam"``, ``"uam"`` or
        ``"ueam"``.
    sigma
        Diffusion coefficient (entropic methods), user units of x per sqrt(time): a number or a
        callable ``σ(t)``.
    cost
        Kinetic cost: ``"quadratic"``, ``"power"``, ``"relativistic"`` or a
        :class:`~trajinfer.costs.KineticCost`.
    growth_scale
        Unbalanced methods: the length scale ``δ`` of the Wasserstein–Fisher–Rao geometry,
        growth rate ``s/δ²``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``: where the potential is evaluated.

    Attributes
    ----------
    duration : float
        Length of the time range in user units.
    """

    def __init__(
        self,
        potential: nn.Module,
        *,
        dim: int,
        t_range: tuple[float, float] = (0.0, 1.0),
        method: str = "am",
        sigma: SigmaLike = None,
        cost: str | KineticCost = "quadratic",
        growth_scale: float = 1.0,
        device: str | torch.device = "auto",
    ):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
        if is_entropic(method) and sigma is None:
            raise ValueError(f"method={method!r} needs sigma, the diffusion coefficient.")
        self.device = resolve_device(device)
        self.potential = potential.to(self.device)
        self.dim = int(dim)
        self.t_range = (float(t_range[0]), float(t_range[1]))
        self.method = method
        self.sigma = sigma
        self.cost = resolve_cost(cost)
        self.growth_scale = float(growth_scale)

    def __repr__(self) -> str:
        sigma = "callable" if callable(self.sigma) else self.sigma
        return (f"Dynamics(method={self.method!r}, dim={self.dim}, t_range={self.t_range}, sigma={sigma}, "
                f"cost={self.cost.name!r}, device={str(self.device)!r})")

    # ------------------------------------------------------------- time units
    @property
    def duration(self) -> float:
        """Length of the time range in user units."""
        return self.t_range[1] - self.t_range[0]

    @property
    def internal_cost(self) -> KineticCost:
        """The kinetic cost seen by the potential in internal time."""
        return self.cost.in_internal_time(self.duration)

    def to_internal(self, t: torch.Tensor) -> torch.Tensor:
        """Internal time ``(t − t0) / T`` of user times ``t``."""
        return (t - self.t_range[0]) / self.duration

    def field(self, x: torch.Tensor, tau: torch.Tensor, laplacian: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Velocity, action and (with ``laplacian``) its Laplacian at ``(x, tau)``, all in internal time."""
        derivs = potential_derivatives(self.potential, x, tau, time_derivative=False, laplacian=laplacian, create_graph=False)
        return self.internal_cost.velocity(derivs.grad), derivs.value, derivs.laplacian

    def _inputs(self, X: Any, t: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = as_float_tensor(X, dim=self.dim, device=self.device)
        t_user = as_time_tensor(t, x.shape[0], device=self.device)
        check_time_in_range(t_user, self.t_range)
        return x, self.to_internal(t_user)

    @staticmethod
    def _output(value: torch.Tensor, as_tensor: bool) -> np.ndarray | torch.Tensor:
        value = value.detach()
        return value if as_tensor else value.cpu().numpy()

    def loss(
        self, *, laplacian: str = "auto", n_probes: int = 1, time_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> ActionMatchingLoss:
        """The Action Matching loss these dynamics minimise, in internal time.

        Parameters
        ----------
        laplacian, n_probes, time_weight
            Laplacian estimator, its probes, and the weight of internal time, as for
            :class:`~trajinfer.ActionMatching`.
        """
        return ActionMatchingLoss(
            method=self.method, cost=self.internal_cost,
            diffusion_sq=internal_diffusion_sq(self.sigma, self.t_range) if is_entropic(self.method) else None,
            time_weight=time_weight, laplacian=resolve_laplacian(laplacian, self.dim, use="training"),
            n_probes=n_probes, growth_scale=self.growth_scale,
        )

    # ------------------------------------------------------------- evaluation
    def action(self, X: Any, t: Any, *, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """The action ``s_t(x)`` in user time units (its gradient is the velocity), shape (n,).

        Parameters
        ----------
        X
            Points, shape (n, d).
        t
            A time or one time per point, user units, inside ``t_range``.
        as_tensor
            Return a tensor on ``device`` instead of a NumPy array.
        """
        x, tau = self._inputs(X, t)
        with torch.no_grad():
            return self._output(self.potential(x, tau) / self.duration, as_tensor)

    def velocity(self, X: Any, t: Any, *, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Velocity ``∇c*(∇s_t(x))`` (the drift of the entropic methods) in user units, shape (n, d).

        Parameters are as for :meth:`action`.
        """
        x, tau = self._inputs(X, t)
        return self._output(self.field(x, tau)[0] / self.duration, as_tensor)

    def growth(self, X: Any, t: Any, *, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Growth rate ``g_t(x) = s_t(x) / δ²`` per user time unit, shape (n,) (unbalanced methods).

        Parameters are as for :meth:`action`.
        """
        if not is_unbalanced(self.method):
            raise ValueError(f"growth is defined for method='uam' or 'ueam', not {self.method!r}.")
        return self.action(X, t, as_tensor=as_tensor) / self.growth_scale**2

    def score(
        self, path: MarginalPath, *, n_samples: int = 20_000, seed: SeedLike = 0, batch_size: int = BATCH_SIZE,
        laplacian: str = "auto", n_probes: int = 1, time_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> float:
        """Negative Action Matching loss of the potential on ``path`` (higher is better).

        The loss is minimised by the true action of ``path`` (up to a constant that depends only
        on the path), so on a path of held-out cells it ranks models as a validation loss does,
        without simulating. Scores compare models only on the same path, ``n_samples`` and
        ``seed`` (the same times and samples), in the internal time of the same time range: they
        rank settings within one path, not paths (use leave-one-time-point-out W1 for that,
        :func:`trajinfer.tl.holdout`).

        Parameters
        ----------
        path
            A marginal path over ``t_range``, e.g. a :class:`~trajinfer.SnapshotPath` of
            held-out cells.
        n_samples
            Samples of each expectation, drawn in minibatches of ``batch_size``.
        seed
            Seed of the samples.
        batch_size, laplacian, n_probes, time_weight
            Settings of the loss, as for :class:`~trajinfer.ActionMatching`.
        """
        if not isinstance(path, MarginalPath):
            raise TypeError("score takes a trajinfer MarginalPath (e.g. tj.SnapshotPath of held-out cells).")
        if path.dim != self.dim or tuple(path.t_range) != self.t_range:
            raise ValueError(
                f"The path must have the fitted dimension {self.dim} and time range {self.t_range}; "
                f"got {path.dim} and {tuple(path.t_range)}."
            )
        path.to(self.device)
        generator = torch_generator(as_int_seed(seed), self.device)
        loss = self.loss(laplacian=laplacian, n_probes=n_probes, time_weight=time_weight)
        total, done = 0.0, 0
        while done < n_samples:
            batch = min(batch_size, n_samples - done)
            terms = loss(self.potential, path, batch_size=batch, proposal=QuasiUniformTimeProposal(), generator=generator)
            total += terms.loss.item() * batch
            done += batch
        return -total / n_samples

    # ------------------------------------------------------------- simulation
    def simulate(
        self,
        X0: Any,
        t_start: float,
        t_end: float,
        *,
        n_steps: int = 100,
        stochastic: bool | None = None,
        seed: SeedLike = None,
        solver: str = "euler",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        chunk_size: int | None = 100_000,
        progress: bool = True,
        method: Any = UNSET,
    ) -> Trajectories:
        """Move samples from ``t_start`` to ``t_end`` (forward or backward in time).

        Parameters
        ----------
        X0
            Start positions, shape (n, d).
        t_start, t_end
            Times in user units inside ``t_range``; ``t_end < t_start`` runs backward.
        n_steps
            Output intervals (and steps of the fixed-step solvers and the SDE).
        stochastic
            Euler–Maruyama with ``sigma`` (default: True for ``eam``/``ueam``). Stochastic
            simulation runs forward only: reversing an SDE needs the score ``∇log q``.
        seed
            Seed of the Brownian increments.
        solver
            ODE solver from torchdiffeq: ``"euler"``, ``"midpoint"``, ``"rk4"`` (fixed step) or
            ``"dopri5"`` (adaptive, ``rtol``/``atol``).
        chunk_size
            Particles integrated at once (bounds memory for millions of cells).
        progress
            Progress bar over chunks (shown when there is more than one).
        method
            Deprecated name of ``solver``.

        Returns
        -------
        Trajectories
            ``times`` (n_steps + 1,), ``X`` (n_steps + 1, n, d) and ``log_weights``; weights
            change only for unbalanced methods.
        """
        solver = _solver(solver, method, "simulate")
        x0 = as_float_tensor(X0, name="X0", dim=self.dim, device=torch.device("cpu"))
        check_time_in_range(torch.tensor([t_start, t_end]), self.t_range, what="t_start/t_end")
        if not (isinstance(n_steps, (int, np.integer)) and n_steps >= 1):
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")
        if float(t_start) == float(t_end):
            raise ValueError(f"t_start and t_end are both {t_start}; choose two different times.")
        stochastic = is_entropic(self.method) if stochastic is None else bool(stochastic)
        if stochastic and not is_entropic(self.method):
            raise ValueError(f"stochastic=True needs an entropic method ('eam' or 'ueam'), not {self.method!r}.")
        if stochastic and t_end < t_start:
            raise ValueError(
                "Stochastic simulation runs forward in time only (reversing an SDE needs the score of "
                "q_t). Simulate forward, use stochastic=False, or fit method='am' for backward transport."
            )
        times = torch.linspace(float(t_start), float(t_end), n_steps + 1, dtype=torch.float64)
        taus = self.to_internal(times).to(device=self.device, dtype=torch.float32)
        generator = torch_generator(seed, self.device)
        track = is_unbalanced(self.method)
        diffusion_sq = internal_diffusion_sq(self.sigma, self.t_range) if stochastic else None

        def field(x: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            velocity, value, _ = self.field(x, tau)
            return velocity, value / self.growth_scale**2

        chunk = x0.shape[0] if chunk_size is None else max(1, int(chunk_size))
        # filled chunk by chunk: the trajectories are held once, never as pieces plus their concatenation
        X_out = logw_out = None
        for lo in progress_bar(range(0, x0.shape[0], chunk), show=progress and x0.shape[0] > chunk, desc="simulate", leave=False):
            xc = x0[lo : lo + chunk].to(self.device)
            if X_out is None:
                X_out = np.empty((len(times), x0.shape[0], self.dim), dtype=x0.numpy().dtype)
                logw_out = np.empty((len(times), x0.shape[0]), dtype=np.float64)
            # on the CPU the SDE writes its steps straight into the output
            into = torch.from_numpy(X_out[:, lo : lo + chunk]) if stochastic and self.device.type == "cpu" else None
            if stochastic:
                X, extra = integrate_sde(
                    field, xc, taus, diffusion=lambda tau: torch.sqrt(diffusion_sq(tau)), track_extra=track, generator=generator,
                    out=into,
                )
            else:
                X, extra = integrate_ode(field, xc, taus, track_extra=track, method=solver, rtol=rtol, atol=atol)
            if into is None:
                X_out[:, lo : lo + chunk] = X.detach().cpu().numpy()
            logw_out[:, lo : lo + chunk] = extra.detach().cpu().double().numpy()
        return Trajectories(times=times.numpy(), X=X_out, log_weights=logw_out)

    def log_likelihood(
        self,
        X: Any,
        log_q0: Callable[[np.ndarray], np.ndarray],
        *,
        t: float | None = None,
        t0: float | None = None,
        n_steps: int = 100,
        solver: str = "rk4",
        laplacian: str = "auto",
        method: Any = UNSET,
    ) -> np.ndarray:
        """Log-density of ``X`` at time ``t`` by the change of variables (paper eq. 9).

        ``log q_t(x) = log q_{t0}(x(t0)) − ∫_{t0}^{t} Δs(x(u)) du`` along the deterministic flow,
        integrated backward from ``x(t) = X``. Defined for ``method="am"`` with the quadratic
        cost (the flow is ``∇s``).

        Parameters
        ----------
        X
            Points, shape (n, d).
        log_q0
            Log-density of the start distribution, called on an (n, d) array.
        t, t0
            Evaluation and start times (default: the end and start of ``t_range``).
        n_steps, solver
            Steps and ODE solver (as for :meth:`simulate`).
        laplacian
            ``"auto"`` (exact in low dimension), ``"exact"`` or ``"hutchinson"`` (one probe per
            step: unbiased but noisy, for high dimensions).
        method
            Deprecated name of ``solver``.
        """
        solver = _solver(solver, method, "log_likelihood")
        if self.method != "am" or not isinstance(self.cost, QuadraticCost):
            raise ValueError("log_likelihood needs a deterministic gradient flow: method='am' with the quadratic cost.")
        t = self.t_range[1] if t is None else float(t)
        t0 = self.t_range[0] if t0 is None else float(t0)
        check_time_in_range(torch.tensor([t, t0]), self.t_range, what="t/t0")
        x = as_float_tensor(X, dim=self.dim, device=self.device)
        if t == t0:
            return np.asarray(log_q0(x.cpu().numpy()), dtype=float)
        lap = resolve_laplacian(laplacian, self.dim, use="evaluation")
        taus = self.to_internal(torch.linspace(t, t0, n_steps + 1, dtype=torch.float64)).to(self.device, torch.float32)

        def field(y: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            velocity, _, laplacian_value = self.field(y, tau, laplacian=lap)
            return velocity, laplacian_value

        X_path, integral = integrate_ode(field, x, taus, track_extra=True, method=solver)
        # integral = ∫_{tau(t)}^{tau(t0)} Δs dtau = −∫_{t0}^{t} Δs, so log q_t = log q0 + integral
        start = X_path[-1].cpu().numpy()
        return np.asarray(log_q0(start), dtype=float) + integral[-1].cpu().double().numpy()

    # ------------------------------------------------------------- files
    def to_payload(self) -> dict[str, Any]:
        """The dynamics as tensors and plain values (what :meth:`save` writes)."""
        if not isinstance(self.potential, MLPPotential):
            raise TypeError("Saving supports the built-in potentials; for a custom module save potential.state_dict().")
        if callable(self.sigma):
            raise TypeError("A callable sigma cannot be saved; refit with a constant sigma to save.")
        return {
            "format": DYNAMICS.format,
            "version": DYNAMICS.version,
            "method": self.method,
            "sigma": to_plain(self.sigma),
            "cost": self.cost.config(),
            "growth_scale": self.growth_scale,
            "dim": self.dim,
            "t_range": list(self.t_range),
            "potential_config": self.potential.config,
            "state_dict": {key: value.detach().cpu() for key, value in self.potential.state_dict().items()},
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, device: str | torch.device = "auto") -> Dynamics:
        """Dynamics from :meth:`to_payload`'s content, the potential frozen for evaluation."""
        network = build_potential(payload["potential_config"])
        network.load_state_dict(payload["state_dict"])
        dynamics = cls(
            network.eval().requires_grad_(False), dim=int(payload["dim"]), t_range=tuple(payload["t_range"]),
            method=payload["method"], sigma=payload["sigma"], cost=resolve_cost(payload["cost"]),
            growth_scale=float(payload["growth_scale"]), device=device,
        )
        return dynamics

    def save(self, file: str | Path) -> None:
        """Write the dynamics to ``file`` atomically (tensors and plain values only).

        Until the new file is complete a previous file at ``file`` stays as it was. Custom
        potential modules and a callable ``sigma`` cannot be saved this way.

        Raises
        ------
        OSError
            If the file cannot be written (no space, no permission); it names the file.
        """
        write_payload(self.to_payload(), file)

    @classmethod
    def load(cls, file: str | Path, *, device: str | torch.device = "auto") -> Dynamics:
        """Read dynamics written by :meth:`save` onto ``device``.

        Raises
        ------
        FileNotFoundError
            If there is no file at ``file``.
        ValueError
            If the file cannot be read as saved dynamics; the message names the file, the
            problem and what to do.
        """
        if not Path(file).is_file():
            raise FileNotFoundError(f"No saved dynamics at {file}.")
        return cls.from_payload(read_payload(file, DYNAMICS), device=device)
