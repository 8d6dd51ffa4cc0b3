"""The Action Matching trainer (scikit-learn contract); what it fits is a :class:`~trajinfer.Dynamics`."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from . import _defaults as defaults
from ._deprecation import UNSET
from ._device import resolve_device
from ._distributed import is_main_process, setup_distributed
from ._random import SeedLike, as_int_seed, torch_generator
from ._run import RunConfig, as_run_config, fold_run_settings
from ._train import FitPlan, train
from ._validation import Constraint, Interval, Options, PositiveIntegers, check_parameter, validate_params
from .costs import KineticCost, QuadraticCost, resolve_cost
from .derivatives import resolve_laplacian
from .diagnostics import FitWarning, fit_diagnostics, report_fit
from .dynamics import Dynamics, SigmaLike
from .losses import is_entropic
from .networks import _ACTIVATIONS, POTENTIAL_FORMS
from .params import EstimatorParams, not_fitted_error
from .paths import CallablePath, MarginalPath, SnapshotPath
from .persistence import MODEL, to_plain, write_payload
from .training import OptimizerSettings
from .trajectories import Trajectories

__all__ = ["ActionMatching"]
# estimator parameters a resumed fit must share with the fit that wrote its checkpoint
_RESUME_PARAMS = (
    "method", "hidden_dims", "activation", "time_frequencies", "batch_size", "lr", "weight_decay", "lr_schedule",
    "grad_clip", "ema_decay", "laplacian", "n_probes", "time_proposal", "growth_scale",
)
# the settings a fit resolved from "auto", kept with the fitted model
RESOLVED = ("lr_", "time_frequencies_", "hidden_dims_")


class ActionMatching(EstimatorParams):
    """Learn a population's dynamics from samples of its marginals by Action Matching.

    A scalar network ``s_t(x)`` (the action) is trained so that ``∇s_t`` transports the observed
    marginals ``q_t``; :meth:`fit` stores the result as a :class:`~trajinfer.Dynamics` in
    ``dynamics_``, and the estimator's :meth:`velocity`, :meth:`simulate`, ... evaluate it.
    Variants:

    - ``"am"``: deterministic, ``dx = ∇s dt`` (Thm 2.2 of Neklyudov et al., 2023);
    - ``"eam"``: stochastic with known diffusion ``sigma``, ``dx = ∇s dt + σ dW`` (Prop. 3.2);
    - ``"uam"``: unbalanced, ``dx = ∇s dt`` and ``d log w = s dt`` (Prop. 3.4);
    - ``"ueam"``: stochastic and unbalanced;
    - ``cost=`` a non-quadratic :class:`~trajinfer.costs.KineticCost` gives c-AM (Sec. 3.3),
      ``dx = ∇c*(∇s) dt`` (``method="am"`` only).

    Settings given as ``"auto"`` take their value for the kind of path fitted, by the rules of
    one table (``trajinfer._defaults.AUTO_RULES``): a :class:`~trajinfer.SnapshotPath` of cells,
    or a path that draws fresh exact samples at every step.

    Parameters
    ----------
    method
        ``"am"`` (default: it needs no ``sigma``), ``"eam"``, ``"uam"`` or ``"ueam"``;
        :func:`trajinfer.fit`, which derives ``sigma`` from the cells, fits ``"eam"``.
    sigma
        Diffusion coefficient in units of x per sqrt(time) (``eam`` and ``ueam``): a number or
        a callable ``σ(t)`` of a tensor of user times.
    cost
        ``"quadratic"`` (default), ``"power"``, ``"relativistic"`` or a ``KineticCost``.
    potential
        ``"mlp"`` (``s = h(t, x)``), ``"residual"`` (``s = ½|h(t, x) − x|²``), ``"inner"``
        (``s = <h(t, x), x>``) or a module ``(x (B, d), tau (B,)) -> (B,)`` of internal time
        ``tau`` in [0, 1] (trained as a copy).
    hidden_dims
        Widths of the built-in potentials' hidden layers; ``"auto"``: (128, 128, 128) on
        snapshots, (64, 64, 64) elsewhere.
    activation
        Activation of the built-in potentials.
    time_frequencies
        Sine/cosine pairs ``sin(πkt), cos(πkt)``, ``k = 1..time_frequencies``, of the built-in
        potentials' time embedding; ``"auto"``: 4 on snapshots, 1 elsewhere.
    n_iter
        Training iterations; ``"auto"``: 1500 on snapshots, 4000 elsewhere.
    batch_size
        Samples per minibatch of the loss.
    lr
        Peak Adam learning rate; ``"auto"``: 1e-2 on snapshots, 3e-3 elsewhere.
    weight_decay
        Adam's weight decay.
    lr_schedule
        ``"cosine"`` (decay to a hundredth of ``lr``) or ``"constant"``.
    grad_clip
        Maximum gradient norm (``None``: no clipping).
    ema_decay
        Decay of the moving average of the weights used for prediction (``None``: the raw
        weights). It is warmed up as ``min(decay, (1 + k)/(10 + k))`` at iteration ``k``, so
        decays close to 1 matter only for fits of many thousand iterations.
    laplacian
        ``"auto"`` (exact in low dimension, Hutchinson above), ``"exact"`` or ``"hutchinson"``.
    n_probes
        Rademacher probes per sample of the Hutchinson Laplacian.
    time_weight
        Optional weight ω(tau) of internal time (torch operations): the weighted loss of App. C.
    time_proposal
        ``"quasi-uniform"`` (default: low-discrepancy times) or ``"adaptive"`` (p(t) ∝ the
        running std of the integrand).
    growth_scale
        Unbalanced methods: the length scale ``δ`` (units of x) of the Wasserstein–Fisher–Rao
        geometry, growth rate ``s/δ²``: transport is preferred over growth and death for
        displacements below about δ (δ = 1 is the paper's uAM). :func:`trajinfer.fit` sets it
        to the data's path length.
    seed
        Int or ``numpy.random.Generator``: the same seed on the same device gives the same fit.
    run
        Where and how the fit runs (device, progress bar, checkpoints, processes):
        a :class:`~trajinfer.RunConfig`, a dict of its settings, or ``None`` for its defaults.

    Attributes
    ----------
    dynamics_ : Dynamics
        The fitted dynamics (moving-average weights).
    loss_curve_ : ndarray
        Loss at every iteration.
    n_iter_ : int
        Iterations run.
    fit_time_ : float
        Wall-clock seconds of the fit.
    lr_, hidden_dims_, time_frequencies_
        The fit's ``lr``, ``hidden_dims`` and ``time_frequencies`` with ``"auto"`` resolved.
    laplacian_ : str
        The Laplacian estimator of the loss (``"auto"`` resolved).
    run_ : RunConfig
        The run settings of the fit (``run`` as a :class:`~trajinfer.RunConfig`).
    diagnostics_ : dict
        Checks of the fit on its own path (:func:`trajinfer.diagnostics.fit_diagnostics`):
        status (``"diverged"`` for a stopped fit), final loss, score on fresh samples, kinetic
        energy against the data's, and warnings naming what to change.
    metadata_ : dict
        Set by :func:`trajinfer.fit`: the AnnData bookkeeping (time key, label ↔ time mapping,
        representation); read it with :func:`trajinfer.tl.fit_record`.
    potential_, dim_, t_range_, device_, cost_, duration_
        Shortcuts to the fitted dynamics' ``potential``, ``dim``, ``t_range``, ``device``,
        ``cost`` and ``duration``.
    """

    # what each parameter accepts, checked by fit (see trajinfer._validation); sigma, cost,
    # potential, run and the settings that depend on one another are checked in _check_params
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "method": Options(defaults.METHODS),
        "hidden_dims": PositiveIntegers(names=("auto",)),
        "activation": Options(tuple(_ACTIVATIONS)),
        "time_frequencies": Interval(Integral, 0, names=("auto",)),
        "n_iter": Interval(Integral, 1, names=("auto",)),
        "batch_size": Interval(Integral, 2),
        "lr": Interval(Real, 0, closed="neither", names=("auto",)),
        "weight_decay": Interval(Real, 0),
        "lr_schedule": Options(defaults.LR_SCHEDULES),
        "grad_clip": Interval(Real, 0, closed="neither", allows_none=True),
        "ema_decay": Interval(Real, 0, 1, closed="neither", allows_none=True),
        "laplacian": Options(defaults.LAPLACIANS),
        "n_probes": Interval(Integral, 1),
        "time_proposal": Options(defaults.TIME_PROPOSALS),
        "growth_scale": Interval(Real, 0, closed="neither"),
    }

    def __init__(
        self,
        method: str = defaults.ESTIMATOR_METHOD,
        *,
        sigma: SigmaLike = None,
        cost: str | KineticCost = "quadratic",
        potential: str | nn.Module = "mlp",
        hidden_dims: Sequence[int] | str = "auto",
        activation: str = "silu",
        time_frequencies: int | str = "auto",
        n_iter: int | str = "auto",
        batch_size: int = defaults.BATCH_SIZE,
        lr: float | str = "auto",
        weight_decay: float = 0.0,
        lr_schedule: str = "cosine",
        grad_clip: float | None = defaults.GRAD_CLIP,
        ema_decay: float | None = defaults.EMA_DECAY,
        laplacian: str = "auto",
        n_probes: int = 1,
        time_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
        time_proposal: str = defaults.TIME_PROPOSAL,
        growth_scale: float = 1.0,
        seed: SeedLike = 0,
        run: RunConfig | Mapping[str, Any] | None = None,
        **run_settings: Any,
    ):
        self.method = method
        self.sigma = sigma
        self.cost = cost
        self.potential = potential
        self.hidden_dims = hidden_dims
        self.activation = activation
        self.time_frequencies = time_frequencies
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.grad_clip = grad_clip
        self.ema_decay = ema_decay
        self.laplacian = laplacian
        self.n_probes = n_probes
        self.time_weight = time_weight
        self.time_proposal = time_proposal
        self.growth_scale = growth_scale
        self.seed = seed
        self.run = run if not run_settings else fold_run_settings(run, run_settings, owner="ActionMatching")

    # ------------------------------------------------------------------ fitting
    def fit(self, path: MarginalPath | Callable, *, t_range: tuple[float, float] | None = None, n_iter: Any = UNSET) -> ActionMatching:
        """Fit the action on a marginal path.

        Parameters
        ----------
        path
            A :class:`~trajinfer.paths.MarginalPath` (e.g. :class:`~trajinfer.SnapshotPath`) or a
            callable ``f(t: Tensor[B]) -> Tensor[B, d]`` drawing one sample of ``q_t`` per time.
        t_range
            Time interval of a callable path (default (0, 1)); path objects carry their own.
        n_iter
            Deprecated: set the ``n_iter`` parameter (``set_params(n_iter=...)``) instead.

        Returns
        -------
        self
        """
        if n_iter is not UNSET:
            warnings.warn(
                "fit(path, n_iter=...) is deprecated and will be removed in the next release; set the parameter "
                "instead: est.set_params(n_iter=...).fit(path).", FutureWarning, stacklevel=2,
            )
        run = as_run_config(self.run)
        self._check_params(run)
        n_iter = self.n_iter if n_iter is UNSET or n_iter is None else n_iter
        check_parameter("n_iter", n_iter, self._parameter_constraints["n_iter"])
        path = self._as_path(path, t_range)
        context, device = setup_distributed(run.distributed, resolve_device(run.device))
        seed = context.broadcast_object(as_int_seed(self.seed))
        path.to(device)
        generator = torch_generator(seed, device)
        plan = self._plan(path, n_iter, run, context.world_size, device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            # seeded global RNG: network initialisation and callable paths that draw from torch's
            # global generator are reproducible; the caller's RNG state is restored afterwards
            torch.manual_seed(seed + context.rank * run.grad_accumulation)
            result = train(plan, path, run, context=context, device=device, generator=generator, seed=seed)
            self._set_fitted(result.dynamics, result.losses, result.fit_time)
            self.run_ = run
            self.diagnostics_ = fit_diagnostics(
                self.dynamics_, path, losses=self.loss_curve_, fit_time=self.fit_time_, lr=self.lr_,
                loss_scale=result.loss_scale, generator=generator, gradient_signal=result.gradient_signal,
                status="ok" if result.divergence is None else "diverged", score_options=self._score_options(),
            )
        if result.divergence is not None:
            raise result.divergence
        if context.is_main:
            report_fit(self.diagnostics_, method=self.method, n_iter=self.n_iter_)
        return self

    def _as_path(self, path: MarginalPath | Callable, t_range: tuple[float, float] | None) -> MarginalPath:
        if isinstance(path, MarginalPath):
            if t_range is not None:
                raise ValueError("t_range applies to callable paths only; a path object carries its own.")
        elif callable(path):
            path = CallablePath(path, t_range=t_range or (0.0, 1.0))
        else:
            raise TypeError("path must be a trajinfer MarginalPath or a callable f(t) -> samples.")
        if is_entropic(self.method) and isinstance(path, SnapshotPath) and path.sigma is None and not callable(self.sigma):
            # the entropic loss is unbounded below on unsmoothed snapshots: smooth them for this sigma
            path = path.with_diffusion(self.sigma)
        if is_entropic(self.method) and isinstance(path, SnapshotPath) and float(path.bandwidths.max()) == 0.0:
            warnings.warn(
                f"method={self.method!r} on unsmoothed snapshots (smoothing=0): the entropic loss is unbounded below "
                "there. Use smoothing='auto' or a positive kernel width.", FitWarning, stacklevel=3,
            )
        return path

    def _plan(self, path: MarginalPath, n_iter: int | str, run: RunConfig, world_size: int, device: torch.device) -> FitPlan:
        """Resolve ``"auto"`` for ``path`` (setting ``lr_``, ``hidden_dims_``, ``time_frequencies_``) and plan the fit."""
        auto = functools.partial(defaults.resolve_auto, on_snapshots=isinstance(path, SnapshotPath))
        self.lr_ = float(auto("lr", self.lr))
        self.hidden_dims_ = tuple(auto("hidden_dims", self.hidden_dims))
        self.time_frequencies_ = int(auto("time_frequencies", self.time_frequencies))
        self.laplacian_ = resolve_laplacian(self.laplacian, path.dim, use="training")
        n_iter = int(auto("n_iter", n_iter))
        cost = resolve_cost(self.cost)
        params = self.get_params()
        setup = {key: to_plain(params[key]) for key in _RESUME_PARAMS}
        setup.update(
            sigma="callable" if callable(self.sigma) else to_plain(self.sigma),
            time_weight=None if self.time_weight is None else "callable",
            potential=self.potential if isinstance(self.potential, str) else type(self.potential).__name__,
            cost=cost.config(), grad_accumulation=run.grad_accumulation, n_iter=n_iter, dim=path.dim,
            t_range=[float(t) for t in path.t_range], n_streams=world_size * run.grad_accumulation,
            device_type=device.type,
        )
        return FitPlan(
            method=self.method, sigma=self.sigma, cost=cost, potential=self.potential, hidden_dims=self.hidden_dims_,
            activation=self.activation, time_frequencies=self.time_frequencies_, n_iter=n_iter,
            batch_size=self.batch_size, optimizer=OptimizerSettings(
                lr=self.lr_, weight_decay=self.weight_decay, lr_schedule=self.lr_schedule, grad_clip=self.grad_clip,
                ema_decay=self.ema_decay,
            ),
            laplacian=self.laplacian_, n_probes=self.n_probes, time_weight=self.time_weight,
            time_proposal=self.time_proposal, growth_scale=self.growth_scale, dim=path.dim,
            t_range=(float(path.t_range[0]), float(path.t_range[1])), setup=setup,
        )

    def _set_fitted(self, dynamics: Dynamics, losses: np.ndarray, fit_time: float) -> None:
        self.dynamics_ = dynamics
        self.loss_curve_ = np.asarray(losses, dtype=float)
        self.n_iter_ = len(self.loss_curve_)
        self.fit_time_ = float(fit_time)

    def _score_options(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "laplacian": self.laplacian_, "n_probes": self.n_probes,
                "time_weight": self.time_weight}

    def _check_params(self, run: RunConfig) -> None:
        validate_params(self.get_params(), self._parameter_constraints)
        run.validate()
        if is_entropic(self.method):
            if self.sigma is None:
                raise ValueError(f"method={self.method!r} needs sigma, the diffusion coefficient (e.g. sigma=0.1).")
            if not callable(self.sigma) and not (isinstance(self.sigma, (int, float)) and self.sigma > 0):
                raise ValueError(f"sigma must be a positive number or a callable σ(t); got {self.sigma!r}.")
        if not isinstance(resolve_cost(self.cost), QuadraticCost) and self.method != "am":
            raise ValueError("Non-quadratic costs (c-AM) are defined for method='am' only.")
        if isinstance(self.potential, str) and self.potential not in POTENTIAL_FORMS:
            raise ValueError(f"Unknown potential {self.potential!r}; use one of {POTENTIAL_FORMS} or an nn.Module.")
        if not isinstance(self.potential, (str, nn.Module)):
            raise TypeError("potential must be a name or a torch.nn.Module.")
        if run.mixed_precision and is_entropic(self.method):
            raise ValueError(
                f"mixed_precision=True is offered for methods without a Laplacian term ('am', 'uam'), not "
                f"{self.method!r}: bfloat16 rounding would swamp the diffusion term of the loss."
            )

    # ------------------------------------------------------------- the fitted dynamics
    def _fitted(self) -> Dynamics:
        if "dynamics_" not in self.__dict__:
            raise not_fitted_error(f"This {type(self).__name__} instance is not fitted yet; call fit(...) first.")
        return self.dynamics_

    potential_ = property(lambda self: self._fitted().potential, doc="The fitted network, in internal time.")
    dim_ = property(lambda self: self._fitted().dim, doc="Dimension of the data.")
    t_range_ = property(lambda self: self._fitted().t_range, doc="Fitted time range in user units.")
    device_ = property(lambda self: self._fitted().device, doc="Device the fitted dynamics live on.")
    cost_ = property(lambda self: self._fitted().cost, doc="The kinetic cost, resolved.")
    duration_ = property(lambda self: self._fitted().duration, doc="Length of the fitted time range.")

    def action(self, X: Any, t: Any, *, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """The fitted action ``s_t(x)``, shape (n,): :meth:`Dynamics.action <trajinfer.Dynamics.action>`."""
        return self._fitted().action(X, t, as_tensor=as_tensor)

    def velocity(self, X: Any, t: Any, *, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Velocity at ``(X, t)`` in user units, shape (n, d): :meth:`Dynamics.velocity <trajinfer.Dynamics.velocity>`."""
        return self._fitted().velocity(X, t, as_tensor=as_tensor)

    def growth(self, X: Any, t: Any, *, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Growth rate per user time unit, shape (n,): :meth:`Dynamics.growth <trajinfer.Dynamics.growth>`."""
        return self._fitted().growth(X, t, as_tensor=as_tensor)

    def score(self, path: MarginalPath, n_samples: int = 20_000, seed: SeedLike = 0) -> float:
        """Negative Action Matching loss on ``path`` with the fit's loss settings (higher is better).

        See :meth:`Dynamics.score <trajinfer.Dynamics.score>`: it ranks settings on one path.
        """
        return self._fitted().score(path, n_samples=n_samples, seed=seed, **self._score_options())

    def simulate(self, X0: Any, t_start: float, t_end: float, *, progress: bool | None = None, **options: Any) -> Trajectories:
        """Move samples from ``t_start`` to ``t_end``: :meth:`Dynamics.simulate <trajinfer.Dynamics.simulate>`.

        ``progress`` defaults to the run's ``progress`` setting.
        """
        dynamics = self._fitted()
        show = self.run_.progress if progress is None else progress
        return dynamics.simulate(X0, t_start, t_end, progress=show, **options)

    def log_likelihood(self, X: Any, log_q0: Callable[[np.ndarray], np.ndarray], **options: Any) -> np.ndarray:
        """Log-density of ``X`` at time ``t``: :meth:`Dynamics.log_likelihood <trajinfer.Dynamics.log_likelihood>`."""
        return self._fitted().log_likelihood(X, log_q0, **options)

    # ------------------------------------------------------------- files
    @classmethod
    def from_potential(
        cls, potential: nn.Module, *, dim: int, t_range: tuple[float, float] = (0.0, 1.0),
        device: str | torch.device = "auto", **params: Any,
    ) -> ActionMatching:
        """Wrap a known potential (e.g. an analytic action) as a fitted estimator.

        ``potential`` maps ``(x, tau)`` with internal time ``tau`` in [0, 1] to the internal
        action; other keyword arguments are estimator parameters (``method``, ``sigma``, ...).
        """
        run = as_run_config(params.pop("run", None)).replace(device=device)
        est = cls(potential=potential, run=run, **params)
        est.run_ = run
        est._check_params(run)
        est.laplacian_ = resolve_laplacian(est.laplacian, int(dim), use="training")
        network = potential.eval().requires_grad_(False)
        est.dynamics_ = Dynamics(
            network, dim=dim, t_range=t_range, method=est.method, sigma=est.sigma, cost=est.cost,
            growth_scale=est.growth_scale, device=device,
        )
        est.loss_curve_, est.n_iter_, est.fit_time_ = np.empty(0), 0, 0.0
        return est

    def save(self, file: str | Path) -> None:
        """Save the fitted model (parameters, dynamics, fit record) to ``file``.

        The file holds tensors and plain values only and loads on any device with
        :func:`trajinfer.load`. It is written atomically: until the new file is complete a
        previous file stays as it was. The run settings (:class:`~trajinfer.RunConfig`) are not
        stored. Custom potential modules and callable ``sigma``/``time_weight`` cannot be saved
        this way (save ``potential_.state_dict()`` yourself). After a distributed fit only rank 0
        writes.

        Raises
        ------
        OSError
            If the file cannot be written (no space, no permission); it names the file.
        """
        dynamics = self._fitted()
        if self.run_.distributed and not is_main_process():
            return
        if not isinstance(self.potential, str):
            raise TypeError("save() supports the built-in potentials; for a custom module save potential_.state_dict().")
        if callable(self.sigma) or self.time_weight is not None:
            raise TypeError("save() cannot store a callable sigma or time_weight; refit with a constant sigma to save.")
        params = {key: to_plain(value) for key, value in self.get_params().items() if key not in ("cost", "run")}
        params["seed"] = None if isinstance(self.seed, np.random.Generator) else as_int_seed(self.seed)
        fitted = {"loss_curve_": torch.as_tensor(self.loss_curve_), "n_iter_": self.n_iter_, "fit_time_": self.fit_time_}
        fitted.update({key: to_plain(getattr(self, key)) for key in RESOLVED if hasattr(self, key)})
        write_payload({
            "format": MODEL.format, "version": MODEL.version, "params": params, "dynamics": dynamics.to_payload(),
            "fitted": fitted, "metadata": getattr(self, "metadata_", {}),
        }, file)
