"""The Action Matching estimator (scikit-learn contract); its files are in :mod:`trajinfer.persistence`."""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import _defaults as defaults
from ._acceleration import training_network
from .params import EstimatorParams, not_fitted_error
from ._checkpoint import TrainingState, load_checkpoint, save_checkpoint
from ._defaults import LAPLACIANS as LAPLACIAN_CHOICES
from ._defaults import LR_SCHEDULES, METHODS, TIME_PROPOSALS
from ._device import resolve_device
from ._distributed import DistributedContext, setup_distributed
from ._random import SeedLike, as_int_seed, torch_generator
from ._validation import (
    Constraint,
    Device,
    Interval,
    Options,
    PositiveIntegers,
    as_float_tensor,
    as_time_tensor,
    check_parameter,
    check_time_in_range,
    validate_params,
)
from .costs import KineticCost, QuadraticCost, resolve_cost
from .derivatives import potential_derivatives, resolve_laplacian
from .diagnostics import FitWarning, fit_diagnostics, report_fit
from .losses import action_matching_loss, is_entropic, is_unbalanced
from .networks import _ACTIVATIONS, POTENTIAL_FORMS, MLPPotential
from .paths import CallablePath, MarginalPath, SnapshotPath
from .persistence import load, to_plain
from .persistence import save as save_model
from .integrators import integrate_ode, integrate_sde
from .time_sampling import (
    AdaptiveTimeProposal,
    QuasiUniformTimeProposal,
    make_time_proposal,
)
from .training import DivergenceError, OptimizerSettings, TrainingLoop
from .trajectories import Trajectories

__all__ = ["ActionMatching", "load"]

logger = logging.getLogger(__name__)

SigmaLike = float | Callable[[torch.Tensor], torch.Tensor] | None

# parameters that change the training trajectory: a checkpoint resumes only under the same values
_RESUME_PARAMS = (
    "method", "hidden_dims", "activation", "time_frequencies", "batch_size", "lr", "weight_decay", "lr_schedule", "warmup",
    "grad_clip", "ema_decay", "laplacian", "n_probes", "time_proposal", "grad_accumulation", "growth_scale",
)


class ActionMatching(EstimatorParams):
    """Learn a population's dynamics from samples of its marginals by Action Matching.

    A scalar network ``s_t(x)`` (the action) is trained so that ``∇s_t`` transports the
    observed marginals ``q_t``. Variants:

    - ``"am"``: deterministic, ``dx = ∇s dt`` (Thm 2.2 of Neklyudov et al., 2023);
    - ``"eam"``: stochastic with known diffusion ``sigma``, ``dx = ∇s dt + σ dW`` (Prop. 3.2);
    - ``"uam"``: unbalanced, ``dx = ∇s dt`` and ``d log w = s dt`` (Prop. 3.4);
    - ``"ueam"``: stochastic and unbalanced;
    - ``cost=`` a non-quadratic :class:`~trajinfer.costs.KineticCost` gives c-AM (Sec. 3.3),
      ``dx = ∇c*(∇s) dt`` (``method="am"`` only).

    Parameters
    ----------
    method
        ``"am"`` (default: it needs no ``sigma``), ``"eam"``, ``"uam"`` or ``"ueam"``.
        :func:`trajinfer.fit`, which derives ``sigma`` from the cells, fits ``"eam"`` by default.
    sigma
        Diffusion coefficient in the user's units of x per sqrt(time) (required for ``eam`` and
        ``ueam``): a float or a callable ``σ(t)`` of a tensor of user times.
    cost
        ``"quadratic"`` (default), ``"power"``, ``"relativistic"`` or a ``KineticCost``.
    potential
        ``"mlp"`` (``s = h(t, x)``), ``"residual"`` (``s = ½|h(t, x) − x|²``), ``"inner"``
        (``s = <h(t, x), x>``) or any module ``(x (B, d), tau (B,)) -> (B,)`` taking internal
        time ``tau`` in [0, 1].
    hidden_dims
        Widths of the built-in potentials' hidden layers. ``"auto"``: (128, 128, 128) on a
        :class:`~trajinfer.SnapshotPath` (``defaults.md``) and (64, 64, 64) on every other path,
        where a narrower network's cheaper steps buy more of the iterations such a fit needs
        (``groundtruth.md``).
    activation
        Activation of the built-in potentials.
    time_frequencies
        Sine/cosine pairs of the built-in potentials' time embedding ``[t, sin(πkt), cos(πkt)]``,
        ``k = 1..time_frequencies``. ``"auto"``: 4 on a :class:`~trajinfer.SnapshotPath` (the
        snapshot defaults were chosen with it, ``defaults.md``) and 1 on every other path,
        where fewer time features fit less of the gradient's noise (``groundtruth.md``).
    n_iter
        Training iterations. ``"auto"``: 1500 on a :class:`~trajinfer.SnapshotPath` and 4000 on
        every other path, whose fresh samples keep lowering the error with more iterations
        (``groundtruth.md``).
    batch_size, weight_decay
        Minibatch size and Adam's weight decay.
    lr
        Adam learning rate. ``"auto"``: 1e-2 on a :class:`~trajinfer.SnapshotPath` (the best
        rate by leave-one-time-point-out W1 on snapshots, ``benchmarks/results/defaults.md``) and
        3e-3 on every other path (a function or interpolant drawing fresh exact samples, the best
        rate on the ground-truth benchmark, ``groundtruth.md``).
    lr_schedule
        ``"cosine"`` (decay to 1% of ``lr``) or ``"constant"``.
    warmup
        Iterations of linear warm-up of the learning rate from 0 to ``lr`` before the schedule
        (0: none; on the ground-truth benchmark 100 iterations tie with none, a mean error of
        2.56% against 2.57% on seed 0, ``groundtruth.md``).
    grad_clip
        Maximum gradient norm (``None`` disables clipping).
    ema_decay
        Decay of the exponential moving average of the weights used for prediction (``None``
        uses the raw weights). The decay is warmed up as ``min(decay, (1 + k)/(10 + k))`` at
        iteration ``k``, which stays below 0.995 for the first 1,790 iterations: at the 1500
        iterations of the snapshot default every decay of 0.995 or more gives the same fit, an
        average over about the last ninth of the iterations.
    laplacian
        ``"auto"`` (exact up to 2 dimensions, Hutchinson above: the cheaper of the two there),
        ``"exact"``, ``"hutchinson"``.
    n_probes
        Rademacher probes per sample for the Hutchinson Laplacian.
    time_weight
        Optional ω(tau) of internal time (torch operations), the weighted objective of App. C.
    time_proposal
        ``"uniform"`` or ``"adaptive"`` (p(t) ∝ running std of the integrand).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    seed
        Int or ``numpy.random.Generator``: same seed and device give the same fit.
    progress
        Show a progress bar.
    grad_accumulation
        Minibatches of ``batch_size`` whose gradients are averaged in each optimiser step
        (an effective batch of ``batch_size × grad_accumulation × processes`` in bounded memory).
    distributed
        Data-parallel training over the processes of a ``torchrun`` launch (or an initialised
        ``torch.distributed`` process group): each process draws its own minibatches, the
        gradients are averaged over processes after every backward pass, and rank 0 alone shows
        progress and writes checkpoints and :meth:`save` files. CUDA devices are assigned by
        ``LOCAL_RANK`` (NCCL), CPU processes use gloo. Launch a script that fits with
        ``distributed=True`` (or ``tj.fit(..., distributed=True)``) as ``torchrun
        --nproc_per_node=4 script.py``; from the command line, ``torchrun --nproc_per_node=4 -m
        trajinfer fit ... --distributed``.
    checkpoint_path
        File to which the state of the fit is written every ``checkpoint_every`` iterations and
        at the end: network, optimiser, learning-rate schedule, moving average, time proposal,
        random streams, iteration and loss curve.
    checkpoint_every
        Iterations between checkpoints.
    resume
        Continue from ``checkpoint_path`` when that file exists (otherwise start a new fit). The
        resumed fit needs the same parameters, data, number of processes and device type, and
        reproduces the uninterrupted fit: the same loss curve, exactly on CPU.
    compile
        Compile the training passes with ``torch.compile`` where it applies: the forward-mode
        jet of the built-in potentials (entropic methods with an exact Laplacian). The first
        iterations pay the compilation time.
    mixed_precision
        Evaluate the network in bfloat16 autocast during training, with float32 losses,
        gradients and weights (``am``, ``uam`` and c-AM only; useful on GPUs with bfloat16
        tensor cores).
    growth_scale
        Unbalanced methods: the length scale ``δ`` (units of ``x``) of the
        Wasserstein–Fisher–Rao geometry, growth rate ``s/δ²``. Transport is preferred over
        growth and death for displacements below about δ; δ = 1 is the paper's uAM.
        :func:`trajinfer.fit` sets it to the data's path length (``growth_scale="auto"``), so
        that the observed motion is explained by transport in any units.

    Notes
    -----
    Minibatch ``j`` of an optimiser step (``j < processes × grad_accumulation``, numbered by
    rank, then accumulation step) draws from a random stream seeded ``seed + j``. A fit on
    ``P`` processes with ``grad_accumulation=1`` therefore takes the same steps as a
    single-process fit with ``grad_accumulation=P`` (exactly for two processes on CPU; beyond,
    up to the summation order of the reduction).

    Attributes
    ----------
    potential_ : torch.nn.Module
        The fitted network (moving-average weights), in internal time.
    dim_ : int
        Dimension of the data.
    t_range_ : tuple of float
        Fitted time interval in the user's units.
    loss_curve_ : ndarray
        Loss at every iteration.
    n_iter_ : int
        Iterations run.
    fit_time_ : float
        Wall-clock seconds of the last fit.
    device_ : torch.device
        Device the model lives on.
    lr_ : float
        Learning rate of the last fit (``lr`` with ``"auto"`` resolved for its path).
    hidden_dims_ : tuple of int
        Hidden-layer widths of the last fit's built-in potential (``"auto"`` resolved).
    time_frequencies_ : int
        Time-embedding frequencies of the last fit's built-in potential (``"auto"`` resolved).
    diagnostics_ : dict
        Checks of the last fit on its own path (:func:`trajinfer.diagnostics.fit_diagnostics`):
        status, final loss, score on fresh samples, kinetic energy against the data's, and
        warnings naming what to change. A fit that diverged has ``status="diverged"``.
    metadata_ : dict
        Set by :func:`trajinfer.fit`: the AnnData bookkeeping (time key, label ↔ time mapping,
        representation, interpolation, sigma, key_added), ``FitRecord.to_dict()``; read it with
        :func:`trajinfer.tl.fit_record`.
    """

    # what each parameter accepts, checked by fit (see trajinfer._validation); sigma, cost,
    # potential and the settings that depend on one another are checked in _check_params
    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "method": Options(METHODS),
        "hidden_dims": PositiveIntegers(names=("auto",)),
        "activation": Options(tuple(_ACTIVATIONS)),
        "time_frequencies": Interval(Integral, 0, names=("auto",)),
        "n_iter": Interval(Integral, 1, names=("auto",)),
        "batch_size": Interval(Integral, 2),
        "lr": Interval(Real, 0, closed="neither", names=("auto",)),
        "weight_decay": Interval(Real, 0),
        "lr_schedule": Options(LR_SCHEDULES),
        "warmup": Interval(Integral, 0),
        "grad_clip": Interval(Real, 0, closed="neither", allows_none=True),
        "ema_decay": Interval(Real, 0, 1, closed="neither", allows_none=True),
        "laplacian": Options(LAPLACIAN_CHOICES),
        "n_probes": Interval(Integral, 1),
        "time_proposal": Options(TIME_PROPOSALS),
        "device": Device(),
        "grad_accumulation": Interval(Integral, 1),
        "checkpoint_every": Interval(Integral, 1),
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
        warmup: int = 0,
        grad_clip: float | None = 1.0,
        ema_decay: float | None = 0.999,
        laplacian: str = "auto",
        n_probes: int = 1,
        time_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
        time_proposal: str = defaults.TIME_PROPOSAL,
        device: str | torch.device = "auto",
        seed: SeedLike = 0,
        progress: bool = True,
        grad_accumulation: int = 1,
        distributed: bool = False,
        checkpoint_path: str | Path | None = None,
        checkpoint_every: int = 500,
        resume: bool = False,
        compile: bool = False,
        mixed_precision: bool = False,
        growth_scale: float = 1.0,
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
        self.warmup = warmup
        self.grad_clip = grad_clip
        self.ema_decay = ema_decay
        self.laplacian = laplacian
        self.n_probes = n_probes
        self.time_weight = time_weight
        self.time_proposal = time_proposal
        self.device = device
        self.seed = seed
        self.progress = progress
        self.grad_accumulation = grad_accumulation
        self.distributed = distributed
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.compile = compile
        self.mixed_precision = mixed_precision
        self.growth_scale = growth_scale

    # ------------------------------------------------------------------ fitting
    def fit(self, path: MarginalPath | Callable, n_iter: int | str | None = None, t_range: tuple[float, float] | None = None) -> ActionMatching:
        """Fit the action on a marginal path.

        Parameters
        ----------
        path
            A :class:`~trajinfer.paths.MarginalPath` (e.g. :class:`~trajinfer.SnapshotPath`) or a
            callable ``f(t: Tensor[B]) -> Tensor[B, d]`` drawing one sample of ``q_t`` per time.
        n_iter
            Overrides the ``n_iter`` parameter for this call.
        t_range
            Time interval of a callable path (default (0, 1)); ignored for path objects.

        Returns
        -------
        self
        """
        self._check_params()
        n_iter = self.n_iter if n_iter is None else n_iter
        check_parameter("n_iter", n_iter, self._parameter_constraints["n_iter"])
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
                "there. Use smoothing='auto' or a positive kernel width.", FitWarning, stacklevel=2,
            )
        context, device = setup_distributed(self.distributed, resolve_device(self.device))
        seed = context.broadcast_object(as_int_seed(self.seed))
        path.to(device)
        generator = torch_generator(seed, device)
        self._set_domain(device=device, dim=path.dim, t_range=path.t_range)
        snapshots = isinstance(path, SnapshotPath)

        def resolved(value: Any, on_snapshots: Any, elsewhere: Any) -> Any:
            """A setting's value, with ``"auto"`` replaced by its default for this kind of path."""
            return (on_snapshots if snapshots else elsewhere) if isinstance(value, str) else value

        n_iter = int(resolved(n_iter, defaults.N_ITER, defaults.N_ITER_SAMPLED))
        self.hidden_dims_ = tuple(resolved(self.hidden_dims, defaults.HIDDEN_DIMS, defaults.HIDDEN_DIMS_SAMPLED))
        self.lr_ = float(resolved(self.lr, defaults.LR, defaults.LR_SAMPLED))
        self.time_frequencies_ = int(resolved(self.time_frequencies, defaults.TIME_FREQUENCIES, defaults.TIME_FREQUENCIES_SAMPLED))

        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            # seeded global RNG: network init and callable paths that draw from torch's
            # global generator are reproducible; the caller's RNG state is restored afterwards
            torch.manual_seed(seed + context.rank * self.grad_accumulation)
            return self._fit_loop(path, n_iter, device, generator, context, seed)

    def _fit_loop(
        self, path: MarginalPath, n_iter: int, device: torch.device, generator: torch.Generator,
        context: DistributedContext, seed: int,
    ) -> ActionMatching:
        network = self._build_potential(path, generator).to(device)
        context.broadcast_module(network)
        self.potential_ = network
        loss_scale, spread = self._loss_scale(path, generator)
        loop = TrainingLoop(
            network, self._optimizer_settings(), n_iter, progress=self.progress and context.is_main,
            desc=f"fit {self.method}", loss_scale=loss_scale,
        )
        proposal = make_time_proposal(self.time_proposal)
        diffusion_sq = self._internal_diffusion_sq if is_entropic(self.method) else None
        state = TrainingState(
            network, loop.optimizer, loop.scheduler, loop.ema, proposal,
            streams=context.streams(generator, seed, self.grad_accumulation, device), losses=loop.losses,
        )
        checkpoint = None if self.checkpoint_path is None else Path(self.checkpoint_path)
        setup = self._checkpoint_setup(n_iter, context, device)
        first = 0
        if checkpoint is not None and self.resume:
            if checkpoint.exists():
                first = load_checkpoint(checkpoint, state, setup, context)
            elif context.is_main:
                logger.info("No checkpoint at %s yet: starting a new fit.", checkpoint)
        uses_jet = is_entropic(self.method) and self.laplacian_ == "exact" and getattr(network, "supports_jet", False)
        model = training_network(
            network, compile_network=self.compile, mixed_precision=self.mixed_precision, uses_jet=uses_jet, device=device,
        )
        n_batches = context.world_size * self.grad_accumulation
        sampled: list[tuple[torch.Tensor, torch.Tensor]] = []

        def step(it: int) -> torch.Tensor:
            sampled.clear()
            loss = torch.zeros((), device=device)
            for stream in state.streams:
                terms = action_matching_loss(
                    model, path, method=self.method, cost=self._internal_cost, batch_size=self.batch_size,
                    proposal=proposal, diffusion_sq=diffusion_sq, time_weight=self.time_weight,
                    laplacian=self.laplacian_, n_probes=self.n_probes, growth_scale=self.growth_scale, generator=stream,
                )
                (terms.loss / n_batches).backward()
                loss = loss + terms.loss.detach() / n_batches
                sampled.append((terms.tau, terms.integrand))
            return loss

        def after_step(it: int) -> None:
            if isinstance(proposal, AdaptiveTimeProposal):
                taus, integrands = zip(*sampled)
                proposal.update(context.gather(torch.cat(taus)), context.gather(torch.cat(integrands)))

        def write_checkpoint(done: int) -> None:
            save_checkpoint(checkpoint, state, done, setup, context)

        hint = (
            f"Lower the learning rate (lr={self.lr_}), use a smaller sigma (sigma={self.sigma}) or a bounded "
            f"path (interpolation='ot'), or standardise the data (data scale: its spread is {spread:.3g})."
        )
        try:
            elapsed = loop.run(
                step, first=first, reduce_gradients=context.reduce_gradients, after_step=after_step,
                checkpoint=write_checkpoint if checkpoint is not None else None,
                checkpoint_every=self.checkpoint_every, hint=hint,
            )
        except DivergenceError:
            loop.finalize()
            self._finish(network, loop.losses, 0.0)
            self.diagnostics_ = fit_diagnostics(self, path, loss_scale=loss_scale, generator=generator, status="diverged")
            raise
        loop.finalize()
        self._finish(network, loop.losses, elapsed)
        self.diagnostics_ = fit_diagnostics(
            self, path, loss_scale=loss_scale, generator=generator, gradient_signal=loop.gradient_signal,
        )
        if context.is_main:
            report_fit(self)
        return self

    def _optimizer_settings(self) -> OptimizerSettings:
        return OptimizerSettings(
            lr=self.lr_, weight_decay=self.weight_decay, lr_schedule=self.lr_schedule, warmup=self.warmup,
            grad_clip=self.grad_clip, ema_decay=self.ema_decay,
        )

    def _loss_scale(self, path: MarginalPath, generator: torch.Generator) -> tuple[float, float]:
        """A bound on the size of a well-posed loss, the kinetic energy of moving independent
        samples between consecutive time points of ``path`` (plus the diffusion's energy
        scale), and the data's spread (RMS distance to the mean)."""
        grid = getattr(path, "taus", None)
        grid = torch.linspace(0, 1, 5) if grid is None else grid.detach().cpu()
        n = 512
        with torch.no_grad():
            samples = [path.sample(torch.full((n,), float(tau), device=path.device), generator) for tau in grid]
            energy = sum(
                0.5 * float(((b - a) ** 2).sum(1).mean()) / float(t1 - t0)
                for a, b, t0, t1 in zip(samples[:-1], samples[1:], grid[:-1], grid[1:])
            )
            spread = float(torch.cat(samples).std(0).pow(2).sum().sqrt())
        if is_entropic(self.method) and not callable(self.sigma):
            energy += 0.5 * float(self.sigma) ** 2 * self.duration_ * self.dim_
        if is_unbalanced(self.method):
            # the growth energy δ²/2 (d log m / dτ)² and the mass that weighs the whole loss
            mass = path.mass(grid.to(path.device)).detach().cpu().double()
            log_mass = torch.log(mass)
            energy += float((0.5 * self.growth_scale**2 * log_mass.diff() ** 2 / grid.double().diff()).sum())
            energy *= float(mass.max())
        return energy, spread

    def _checkpoint_setup(self, n_iter: int, context: DistributedContext, device: torch.device) -> dict[str, Any]:
        """Settings a resumed fit must share with the fit that wrote the checkpoint."""
        params = self.get_params()
        setup = {key: to_plain(params[key]) for key in _RESUME_PARAMS}
        setup["sigma"] = "callable" if callable(self.sigma) else to_plain(self.sigma)
        setup["time_weight"] = None if self.time_weight is None else "callable"
        setup["potential"] = params["potential"] if isinstance(params["potential"], str) else type(params["potential"]).__name__
        setup["cost"] = self.cost_.config()
        setup.update(
            n_iter=int(n_iter), dim=self.dim_, t_range=list(self.t_range_),
            n_streams=context.world_size * self.grad_accumulation, device_type=device.type,
        )
        return setup

    def _finish(self, network: nn.Module, losses: np.ndarray, elapsed: float) -> None:
        self.potential_ = network
        self.loss_curve_ = np.asarray(losses, dtype=float)
        self.n_iter_ = len(losses)
        self.fit_time_ = elapsed

    def _set_domain(self, *, device: torch.device, dim: int, t_range: Sequence[float]) -> None:
        """Set what a model is defined on: ``device_``, ``dim_``, ``t_range_`` and the resolved
        ``cost_`` and ``laplacian_`` (the first fitted attributes: training needs them)."""
        self.device_ = device
        self.dim_ = int(dim)
        self.t_range_ = (float(t_range[0]), float(t_range[1]))
        self.cost_ = resolve_cost(self.cost)
        self.laplacian_ = resolve_laplacian(self.laplacian, self.dim_, use="training")

    def _set_fitted(self, *, potential: nn.Module, loss_curve: np.ndarray, fit_time: float) -> None:
        """Set the fitted network, frozen for prediction on ``device_``, and the fit's record
        (``loss_curve_``, ``n_iter_``, ``fit_time_``); after :meth:`_set_domain`."""
        self.potential_ = potential.to(self.device_).eval().requires_grad_(False)
        self.loss_curve_ = np.asarray(loss_curve, dtype=float)
        self.n_iter_ = len(self.loss_curve_)
        self.fit_time_ = float(fit_time)

    def _check_params(self) -> None:
        validate_params(self.get_params(), self._parameter_constraints)
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
        if self.resume and self.checkpoint_path is None:
            raise ValueError("resume=True needs checkpoint_path, the file to resume from.")
        if self.checkpoint_path is not None and not Path(self.checkpoint_path).resolve().parent.is_dir():
            raise ValueError(f"checkpoint_path={str(self.checkpoint_path)!r}: its folder does not exist.")
        if self.mixed_precision and is_entropic(self.method):
            raise ValueError(
                f"mixed_precision=True is offered for methods without a Laplacian term ('am', 'uam'), not "
                f"{self.method!r}: bfloat16 rounding would swamp the diffusion term of the loss."
            )

    def _build_potential(self, path: MarginalPath, generator: torch.Generator) -> nn.Module:
        if isinstance(self.potential, nn.Module):
            return copy.deepcopy(self.potential)
        network = MLPPotential(
            self.dim_, self.hidden_dims_, self.activation, form=self.potential, n_time_frequencies=self.time_frequencies_,
        )
        with torch.no_grad():
            probe = path.sample(torch.rand(2048, generator=generator, device=path.device), generator)
            network.set_input_normalization(probe.mean(0), probe.std(0))
        return network

    # ------------------------------------------------------------- time units
    @property
    def duration_(self) -> float:
        """Length of the fitted time interval in user units."""
        self._check_fitted()
        return self.t_range_[1] - self.t_range_[0]

    @property
    def _internal_cost(self) -> KineticCost:
        return self.cost_.in_internal_time(self.duration_)

    def _to_internal(self, t: torch.Tensor) -> torch.Tensor:
        return (t - self.t_range_[0]) / self.duration_

    def _user_sigma(self, t_user: torch.Tensor) -> torch.Tensor:
        if callable(self.sigma):
            return torch.as_tensor(self.sigma(t_user), dtype=t_user.dtype, device=t_user.device).expand_as(t_user)
        return torch.full_like(t_user, float(self.sigma))

    def _internal_diffusion_sq(self, tau: torch.Tensor) -> torch.Tensor:
        """σ² in internal time: dX = σ dW_t with t = t0 + T tau gives σ_tau² = σ² T."""
        t_user = self.t_range_[0] + tau * self.duration_
        return self._user_sigma(t_user) ** 2 * self.duration_

    # ------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "potential_"):
            raise not_fitted_error("This ActionMatching instance is not fitted yet; call fit(...) first.")

    def _inputs(self, X: Any, t: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        x = as_float_tensor(X, dim=self.dim_, device=self.device_)
        t_user = as_time_tensor(t, x.shape[0], device=self.device_)
        check_time_in_range(t_user, self.t_range_)
        return x, self._to_internal(t_user)

    @staticmethod
    def _output(value: torch.Tensor, as_tensor: bool) -> np.ndarray | torch.Tensor:
        value = value.detach()
        return value if as_tensor else value.cpu().numpy()

    def action(self, X: Any, t: Any, *, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """The fitted action ``s_t(x)`` in user time units (its gradient is the velocity), shape (n,)."""
        x, tau = self._inputs(X, t)
        with torch.no_grad():
            return self._output(self.potential_(x, tau) / self.duration_, as_tensor)

    def velocity(self, X: Any, t: Any, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Velocity ``∇c*(∇s_t(x))`` (the drift for eAM) in user units, shape (n, d)."""
        x, tau = self._inputs(X, t)
        return self._output(self._internal_velocity(x, tau)[0] / self.duration_, as_tensor)

    def growth(self, X: Any, t: Any, as_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Growth rate ``g_t(x) = s_t(x) / δ²`` per user time unit (``uam``/``ueam`` only; ``δ`` is
        ``growth_scale``), shape (n,)."""
        if not is_unbalanced(self.method):
            raise ValueError(f"growth is defined for method='uam' or 'ueam', not {self.method!r}.")
        return self.action(X, t, as_tensor=as_tensor) / self.growth_scale**2

    def _internal_velocity(self, x: torch.Tensor, tau: torch.Tensor, laplacian: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        derivs = potential_derivatives(self.potential_, x, tau, time_derivative=False, laplacian=laplacian, create_graph=False)
        return self._internal_cost.velocity(derivs.grad), derivs.value, derivs.laplacian

    def score(self, path: MarginalPath, n_samples: int = 20_000, seed: SeedLike = 0) -> float:
        """Negative Action Matching loss of the fitted action on ``path`` (higher is better).

        The loss is minimised by the true action of ``path`` (up to a constant that depends
        only on the path), so on a path built from held-out cells it ranks fitted models the
        way a validation loss does: the model selection criterion of the method itself, without
        simulating. Scores are comparable between models only on the same path, ``n_samples``
        and ``seed`` (the same time points and samples are drawn), and only in the same units
        (internal time of the fitted interval).

        Parameters
        ----------
        path
            A marginal path over the fitted time interval, e.g. a
            :class:`~trajinfer.SnapshotPath` of held-out cells.
        n_samples
            Samples of each expectation (drawn in minibatches of ``batch_size``).
        seed
            Seed of the samples.
        """
        self._check_fitted()
        if not isinstance(path, MarginalPath):
            raise TypeError("score takes a trajinfer MarginalPath (e.g. tj.SnapshotPath of held-out cells).")
        if path.dim != self.dim_ or tuple(path.t_range) != self.t_range_:
            raise ValueError(
                f"The path must have the fitted dimension {self.dim_} and time range {self.t_range_}; "
                f"got {path.dim} and {tuple(path.t_range)}."
            )
        path.to(self.device_)
        generator = torch_generator(as_int_seed(seed), self.device_)
        diffusion_sq = self._internal_diffusion_sq if is_entropic(self.method) else None
        total, done = 0.0, 0
        while done < n_samples:
            batch = min(self.batch_size, n_samples - done)
            terms = action_matching_loss(
                self.potential_, path, method=self.method, cost=self._internal_cost, batch_size=batch,
                proposal=QuasiUniformTimeProposal(), diffusion_sq=diffusion_sq, time_weight=self.time_weight,
                laplacian=self.laplacian_, n_probes=self.n_probes, growth_scale=self.growth_scale, generator=generator,
            )
            total += terms.loss.item() * batch
            done += batch
        return -total / n_samples

    # ------------------------------------------------------------- simulation
    def simulate(
        self,
        X0: Any,
        t_start: float,
        t_end: float,
        n_steps: int = 100,
        stochastic: bool | None = None,
        seed: SeedLike = None,
        method: str = "euler",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        chunk_size: int | None = 100_000,
        progress: bool | None = None,
    ) -> Trajectories:
        """Move samples from ``t_start`` to ``t_end`` (forward or backward in time).

        Parameters
        ----------
        X0
            Start positions, shape (n, d).
        t_start, t_end
            Times in user units inside the fitted range; ``t_end < t_start`` runs backward.
        n_steps
            Output intervals (and steps for fixed-step solvers and the SDE).
        stochastic
            Euler–Maruyama with the fitted ``sigma`` (default: True for ``eam``/``ueam``).
            Stochastic simulation runs forward only: reversing an SDE needs the score.
        seed
            Seed of the Brownian increments.
        method
            ODE solver from torchdiffeq: ``"euler"``, ``"midpoint"``, ``"rk4"`` (fixed step) or
            ``"dopri5"`` (adaptive, ``rtol``/``atol``).
        chunk_size
            Particles integrated at once (bounds memory for millions of cells).
        progress
            Progress bar over chunks (default: the estimator's ``progress``).

        Returns
        -------
        Trajectories
            ``times`` (n_steps + 1,), ``X`` (n_steps + 1, n, d) and ``log_weights``; weights
            change only for unbalanced methods.
        """
        self._check_fitted()
        x0 = as_float_tensor(X0, name="X0", dim=self.dim_, device=torch.device("cpu"))
        check_time_in_range(torch.tensor([t_start, t_end]), self.t_range_, what="t_start/t_end")
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
        taus = self._to_internal(times).to(device=self.device_, dtype=torch.float32)
        generator = torch_generator(seed, self.device_)
        track = is_unbalanced(self.method)

        def field(x: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            velocity, value, _ = self._internal_velocity(x, tau)
            return velocity, value / self.growth_scale**2

        chunk = x0.shape[0] if chunk_size is None else max(1, int(chunk_size))
        X_out, logw_out = [], []
        show = self.progress if progress is None else progress
        for lo in tqdm(range(0, x0.shape[0], chunk), disable=not show or x0.shape[0] <= chunk, desc="simulate", leave=False):
            xc = x0[lo : lo + chunk].to(self.device_)
            if stochastic:
                diffusion = lambda tau: torch.sqrt(self._internal_diffusion_sq(tau))  # noqa: E731
                X, extra = integrate_sde(field, xc, taus, diffusion=diffusion, track_extra=track, generator=generator)
            else:
                X, extra = integrate_ode(field, xc, taus, track_extra=track, method=method, rtol=rtol, atol=atol)
            X_out.append(X.detach().cpu())
            logw_out.append(extra.detach().cpu())
        return Trajectories(
            times=times.numpy(),
            X=torch.cat(X_out, dim=1).numpy(),
            log_weights=torch.cat(logw_out, dim=1).double().numpy(),
        )

    def log_likelihood(
        self,
        X: Any,
        log_q0: Callable[[np.ndarray], np.ndarray],
        t: float | None = None,
        t0: float | None = None,
        n_steps: int = 100,
        method: str = "rk4",
        laplacian: str = "auto",
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
            Evaluation and start times (default: the end and start of the fitted range).
        n_steps, method
            Fixed-step (or adaptive) solver settings.
        laplacian
            ``"auto"`` (exact up to 16 dimensions), ``"exact"`` or ``"hutchinson"`` (one probe per
            step: an unbiased but noisy estimate, for high dimensions).
        """
        self._check_fitted()
        if self.method != "am" or not isinstance(self.cost_, QuadraticCost):
            raise ValueError("log_likelihood needs a deterministic gradient flow: method='am' with the quadratic cost.")
        t = self.t_range_[1] if t is None else float(t)
        t0 = self.t_range_[0] if t0 is None else float(t0)
        check_time_in_range(torch.tensor([t, t0]), self.t_range_, what="t/t0")
        x = as_float_tensor(X, dim=self.dim_, device=self.device_)
        if t == t0:
            return np.asarray(log_q0(x.cpu().numpy()), dtype=float)
        lap = resolve_laplacian(laplacian, self.dim_, use="evaluation")
        taus = self._to_internal(torch.linspace(t, t0, n_steps + 1, dtype=torch.float64)).to(self.device_, torch.float32)

        def field(y: torch.Tensor, tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            velocity, _, laplacian_value = self._internal_velocity(y, tau, laplacian=lap)
            return velocity, laplacian_value

        X_path, integral = integrate_ode(field, x, taus, track_extra=True, method=method)
        # integral = ∫_{tau(t)}^{tau(t0)} Δs dtau = −∫_{t0}^{t} Δs, so log q_t = log q0 + integral
        start = X_path[-1].cpu().numpy()
        return np.asarray(log_q0(start), dtype=float) + integral[-1].cpu().double().numpy()

    # ------------------------------------------------------------- persistence
    @classmethod
    def from_potential(
        cls,
        potential: nn.Module,
        *,
        dim: int,
        t_range: tuple[float, float] = (0.0, 1.0),
        device: str | torch.device = "auto",
        **params: Any,
    ) -> ActionMatching:
        """Wrap a known potential (e.g. an analytic action) as a fitted estimator.

        ``potential`` maps ``(x, tau)`` with internal time ``tau`` in [0, 1] to the internal action;
        other keyword arguments are estimator parameters (``method``, ``sigma``, ``cost``, ...).
        """
        est = cls(potential=potential, device=device, **params)
        est._check_params()
        est._set_domain(device=resolve_device(device), dim=dim, t_range=t_range)
        est._set_fitted(potential=potential, loss_curve=np.empty(0), fit_time=0.0)
        return est

    def save(self, path: str | Path) -> None:
        """Save the fitted model (weights, parameters, fitted attributes) to ``path``.

        The file holds tensors and plain Python values only and loads on any device with
        :func:`trajinfer.load`. It is written atomically: until the new file is complete, a
        previous file at ``path`` stays as it was, and an interrupted save leaves it intact.
        Settings of this machine and run (``device``, ``checkpoint_path``, ``resume``) are not
        stored. Custom potential modules and callable ``sigma``/``time_weight`` cannot be saved
        this way; save ``potential_.state_dict()`` yourself in that case. After a distributed
        fit only rank 0 writes (every rank holds the same model).
        """
        save_model(self, path)

