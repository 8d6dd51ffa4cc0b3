"""The Action Matching fit procedure behind :meth:`trajinfer.ActionMatching.fit`.

:func:`train` builds the potential, runs the package's one optimisation loop
(:class:`~trajinfer.training.TrainingLoop`) on the Action Matching loss with checkpoints and
data-parallel processes, and returns the trained network with the fit's record; the estimator
turns that into a :class:`~trajinfer.Dynamics` and checks it (:mod:`trajinfer.diagnostics`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._acceleration import training_network
from ._checkpoint import TrainingState, load_checkpoint, save_checkpoint
from ._distributed import DistributedContext
from ._learned_path import PathTrainer
from ._run import RunConfig
from .costs import KineticCost
from .dynamics import Dynamics, SigmaLike
from .losses import is_entropic, is_unbalanced
from .networks import MLPPotential
from .paths import MarginalPath
from .time_sampling import AdaptiveTimeProposal, make_time_proposal
from .training import DivergenceError, OptimizerSettings, TrainingLoop

__all__ = ["FitPlan", "TrainResult", "train"]

logger = logging.getLogger(__name__)

#: Random draws of the path used for the input normalisation of the built-in potentials.
NORMALIZATION_SAMPLES = 2048
#: Samples per time point of the loss scale (:func:`loss_scale`).
SCALE_SAMPLES = 512


@dataclass(frozen=True)
class FitPlan:
    """Every setting of one fit, with ``"auto"`` resolved and the cost and Laplacian built.

    ``setup`` holds the settings a checkpoint must share with the fit that resumes it.
    """

    method: str
    sigma: SigmaLike
    cost: KineticCost
    potential: str | nn.Module
    hidden_dims: tuple[int, ...]
    activation: str
    time_frequencies: int
    n_iter: int
    batch_size: int
    optimizer: OptimizerSettings
    laplacian: str
    n_probes: int
    time_weight: Callable[[torch.Tensor], torch.Tensor] | None
    time_proposal: str
    growth_scale: float
    dim: int
    t_range: tuple[float, float]
    setup: dict[str, Any]


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained dynamics (moving-average weights, frozen) and the fit's record."""

    dynamics: Dynamics
    losses: np.ndarray
    fit_time: float
    gradient_signal: float
    loss_scale: float
    divergence: DivergenceError | None


def build_network(plan: FitPlan, path: MarginalPath, generator: torch.Generator) -> nn.Module:
    """A copy of a custom module, or a built-in potential normalised to the path's samples."""
    if isinstance(plan.potential, nn.Module):
        return copy.deepcopy(plan.potential)
    network = MLPPotential(
        plan.dim, plan.hidden_dims, plan.activation, form=plan.potential, n_time_frequencies=plan.time_frequencies,
    )
    with torch.no_grad():
        probe = path.sample(torch.rand(NORMALIZATION_SAMPLES, generator=generator, device=path.device), generator)
        network.set_input_normalization(probe.mean(0), probe.std(0))
    return network


def loss_scale(plan: FitPlan, path: MarginalPath, generator: torch.Generator) -> tuple[float, float]:
    """A bound on the size of a well-posed loss and the data's spread (RMS distance to the mean).

    The bound is the kinetic energy of moving independent samples between consecutive time
    points of ``path``, plus the diffusion's energy scale and, when unbalanced, the growth
    energy; the training loop's runaway check and the diagnostics compare losses with it.
    """
    grid = getattr(path, "taus", None)
    grid = torch.linspace(0, 1, 5) if grid is None else grid.detach().cpu()
    duration = plan.t_range[1] - plan.t_range[0]
    with torch.no_grad():
        samples = [path.sample(torch.full((SCALE_SAMPLES,), float(tau), device=path.device), generator) for tau in grid]
        energy = sum(
            0.5 * float(((b - a) ** 2).sum(1).mean()) / float(t1 - t0)
            for a, b, t0, t1 in zip(samples[:-1], samples[1:], grid[:-1], grid[1:])
        )
        spread = float(torch.cat(samples).std(0).pow(2).sum().sqrt())
    if is_entropic(plan.method) and not callable(plan.sigma):
        energy += 0.5 * float(plan.sigma) ** 2 * duration * plan.dim
    if is_unbalanced(plan.method):
        # the growth energy δ²/2 (d log m / dτ)² and the mass that weighs the whole loss
        mass = path.mass(grid.to(path.device)).detach().cpu().double()
        log_mass = torch.log(mass)
        energy += float((0.5 * plan.growth_scale**2 * log_mass.diff() ** 2 / grid.double().diff()).sum())
        energy *= float(mass.max())
    return energy, spread


def train(
    plan: FitPlan, path: MarginalPath, run: RunConfig, *, context: DistributedContext, device: torch.device,
    generator: torch.Generator, seed: int,
) -> TrainResult:
    """Fit the potential of ``plan`` on ``path``; a divergence is returned, not raised.

    Call under a seeded, forked global random state (network initialisation draws from it).
    """
    network = build_network(plan, path, generator).to(device)
    context.broadcast_module(network)
    dynamics = Dynamics(
        network, dim=plan.dim, t_range=plan.t_range, method=plan.method, sigma=plan.sigma, cost=plan.cost,
        growth_scale=plan.growth_scale, device=device,
    )
    loss_of = dynamics.loss(laplacian=plan.laplacian, n_probes=plan.n_probes, time_weight=plan.time_weight)
    scale, spread = loss_scale(plan, path, generator)
    loop = TrainingLoop(
        network, plan.optimizer, plan.n_iter, progress=run.progress and context.is_main, desc=f"fit {plan.method}",
        loss_scale=scale,
    )
    proposal = make_time_proposal(plan.time_proposal)
    path_trainer = None
    if getattr(path, "correction", None) is not None:  # a learned path: trained with the action
        path_trainer = PathTrainer(
            # each process's share is divided by their number, so summing over processes averages
            path, lambda stream: loss_of.path_objective(
                network, path, batch_size=plan.batch_size, proposal=proposal, generator=stream,
            ) / context.world_size,
            n_iter=plan.n_iter, reduce_gradients=context.reduce_gradients,
        )
        context.broadcast_module(path.correction)  # one starting path on every process
    state = TrainingState(
        network, loop.optimizer, loop.scheduler, loop.ema, proposal,
        streams=context.streams(generator, seed, run.grad_accumulation, device), losses=loop.losses,
        path_trainer=path_trainer,
    )
    checkpoint = None if run.checkpoint_file is None else Path(run.checkpoint_file)
    first = 0
    if checkpoint is not None and run.resume:
        if checkpoint.exists():
            first = load_checkpoint(checkpoint, state, plan.setup, context)
        elif context.is_main:
            logger.info("No checkpoint at %s yet: starting a new fit.", checkpoint)
    uses_jet = is_entropic(plan.method) and plan.laplacian == "exact" and getattr(network, "supports_jet", False)
    model = training_network(
        network, compile_network=run.compile, mixed_precision=run.mixed_precision, uses_jet=uses_jet, device=device,
    )
    n_batches = context.world_size * run.grad_accumulation
    sampled: list[tuple[torch.Tensor, torch.Tensor]] = []
    def step(it: int) -> torch.Tensor:
        sampled.clear()
        loss = torch.zeros((), device=device)
        for stream in state.streams:
            terms = loss_of(model, path, batch_size=plan.batch_size, proposal=proposal, generator=stream)
            (terms.loss / n_batches).backward()
            loss = loss + terms.loss.detach() / n_batches
            sampled.append((terms.tau, terms.integrand))
        if path_trainer is not None:  # the path's step against the action before the action's own step
            path_trainer.step(it, state.streams[0])
        return loss

    def after_step(it: int) -> None:
        if isinstance(proposal, AdaptiveTimeProposal):
            taus, integrands = zip(*sampled)
            proposal.update(context.gather(torch.cat(taus)), context.gather(torch.cat(integrands)))

    def write_checkpoint(done: int) -> None:
        save_checkpoint(checkpoint, state, done, plan.setup, context)

    hint = (
        f"Lower the learning rate (lr={plan.optimizer.lr}), use a smaller sigma (sigma={plan.sigma}) or a bounded "
        f"path (interpolation='ot'), or standardise the data (data scale: its spread is {spread:.3g})."
    )
    divergence, elapsed = None, 0.0
    try:
        elapsed = loop.run(
            step, first=first, reduce_gradients=context.reduce_gradients, after_step=after_step,
            checkpoint=write_checkpoint if checkpoint is not None else None, checkpoint_every=run.checkpoint_every,
            hint=hint,
        )
    except DivergenceError as err:
        divergence = err
    loop.finalize()
    return TrainResult(
        dynamics=dynamics, losses=np.asarray(loop.losses, dtype=float), fit_time=elapsed,
        gradient_signal=loop.gradient_signal if divergence is None else float("nan"), loss_scale=scale,
        divergence=divergence,
    )
