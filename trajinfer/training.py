"""The one optimisation loop of the package: Adam, learning-rate schedule, gradient clipping,
moving average of the weights, divergence rollback and checkpoint cadence.

The Action Matching estimator and every baseline (score matching, flow matching) train with
:class:`TrainingLoop`; each supplies only a ``step`` function that computes the loss of one
iteration and calls ``backward`` on it.

Divergence handling. Before each optimiser step the loop checks the loss and the gradient
norm; every ``rollback_every`` iterations, while the fit is healthy, it keeps a copy of the
weights, the moving average and the optimiser state. A fit is stopped, and that copy restored,
when

- the loss or the gradient norm is not finite (the failed step is not applied; when the losses
  were healthy up to that iteration, e.g. a bad draw of data, the current weights are kept), or
- the loss *runs away*: the median of the last ``RUNAWAY_WINDOW`` losses differs from the
  median of the early losses (iterations ``EARLY_START`` to ``EARLY_STOP``; 0 before they are
  known) by more than ``RUNAWAY_FACTOR`` times the reference scale: the largest of the caller's
  ``loss_scale`` (for Action Matching, the kinetic energy of moving the data between its time
  points, a bound on a well-posed loss), the early losses' median absolute value and spread,
  and ``RUNAWAY_FLOOR``. A loss bounded below settles within a few times that scale; one that
  keeps falling by orders of magnitude is unbounded below on the chosen path, or the learning
  rate is too high.

A copy is taken only while the current loss is within ``HEALTHY_FACTOR`` times the reference
scale of the early median, so the weights left behind after a stop come from a healthy part of
the fit and predict velocities of the early fit's size, never overflowing ones.

Convergence. Over the last ``SIGNAL_FRACTION`` of the iterations the loop sums the (clipped)
gradients ``g_k`` and their squared norms, and reports the *gradient signal*
``|Σ g_k|² / Σ |g_k|²``: about 1 when the gradients are only minibatch noise around a minimum,
and up to the number of iterations summed when they keep pointing one way, i.e. when the fit
ended (its learning rate decayed) before it reached a minimum.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._defaults import EMA_DECAY, GRAD_CLIP, LR_SCHEDULES
from ._progress import progress_bar

__all__ = ["DivergenceError", "LR_SCHEDULES", "OptimizerSettings", "TrainingLoop", "lr_factor"]

logger = logging.getLogger(__name__)

EARLY_START, EARLY_STOP = 20, 100
RUNAWAY_WINDOW = 25
RUNAWAY_FACTOR = 100.0
RUNAWAY_FLOOR = 1e-2
HEALTHY_FACTOR = 10.0
SIGNAL_FRACTION = 0.1


class DivergenceError(FloatingPointError):
    """A fit stopped because its loss or gradient diverged; the last healthy weights were kept.

    Attributes
    ----------
    iteration : int
        Iteration at which the divergence was detected.
    reason : str
        What diverged (``"non-finite loss"``, ``"non-finite gradient"``, ``"runaway loss"``).
    """

    def __init__(self, message: str, *, iteration: int, reason: str):
        super().__init__(message)
        self.iteration = iteration
        self.reason = reason


@dataclass(frozen=True)
class OptimizerSettings:
    """Settings of :class:`TrainingLoop`.

    Parameters
    ----------
    lr
        Peak learning rate of Adam.
    weight_decay
        Adam's L2 penalty.
    lr_schedule
        ``"cosine"`` (decay to a hundredth of ``lr`` over the fit) or ``"constant"``.
    grad_clip
        Maximum gradient norm (``None`` disables clipping).
    ema_decay
        Decay of the moving average of the weights (``None`` for none), warmed up as
        ``min(decay, (1 + k) / (10 + k))``.
    """

    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    grad_clip: float | None = GRAD_CLIP
    ema_decay: float | None = EMA_DECAY


def lr_factor(settings: OptimizerSettings, n_iter: int) -> Callable[[int], float]:
    """Multiplier of the learning rate at each step: 1, or a cosine decay from 1 to 0.01."""
    if settings.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {settings.lr_schedule!r}.")
    span = max(1, n_iter)

    def factor(step: int) -> float:
        if settings.lr_schedule == "constant":
            return 1.0
        progress = min(step, span) / span
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _adam(params: list[torch.Tensor], **kwargs: float) -> torch.optim.Adam:
    """Adam with the fused kernel (one kernel for all parameters: for the small networks of
    this package the per-parameter loop of the default implementation costs as much as the
    network itself), or the multi-tensor one where the fused kernel is not available."""
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, foreach=True, **kwargs)


@dataclass
class _Rollback:
    iteration: int
    tensors: list[torch.Tensor]
    scheduler: dict


@dataclass
class TrainingLoop:
    """Optimise ``network`` with Adam; the caller's ``step`` computes each iteration's loss.

    Parameters
    ----------
    network
        The module whose parameters are optimised.
    settings
        Optimiser, schedule, clipping and moving-average settings.
    n_iter
        Total number of iterations of the fit (sets the schedule).
    progress
        Show a progress bar (left on screen): in Jupyter, a terminal or a log, unless
        ``tj.settings.progress`` is ``False``.
    desc
        Label of the progress bar.
    rollback_every
        Iterations between copies of the healthy state kept for a rollback.
    loss_scale
        A bound on the size of a well-posed loss (``None`` if unknown), the reference of the
        runaway check before the early losses are known.

    Attributes
    ----------
    optimizer, scheduler
        The Adam optimiser and its learning-rate schedule.
    ema
        Moving average of the parameters (``None`` without one).
    losses
        Loss of every iteration, filled as the fit runs.
    gradient_signal
        ``|Σ g|² / Σ |g|²`` over the gradients of the last ``SIGNAL_FRACTION`` of the fit (NaN
        until that part has run): about 1 for noise around a minimum, large for a fit that
        stopped before reaching one.
    """

    network: nn.Module
    settings: OptimizerSettings
    n_iter: int
    progress: bool = True
    desc: str = "fit"
    rollback_every: int = 25
    loss_scale: float | None = None
    optimizer: torch.optim.Optimizer = field(init=False)
    scheduler: torch.optim.lr_scheduler.LambdaLR = field(init=False)
    ema: list[torch.Tensor] | None = field(init=False)
    losses: np.ndarray = field(init=False)
    gradient_signal: float = field(init=False, default=math.nan)

    def __post_init__(self) -> None:
        self.params = [p for p in self.network.parameters() if p.requires_grad]
        self.optimizer = _adam(self.params, lr=self.settings.lr, weight_decay=self.settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(self.settings, self.n_iter))
        self.ema = [p.detach().clone() for p in self.params] if self.settings.ema_decay else None
        self.losses = np.full(self.n_iter, np.nan)
        self._rollback: _Rollback | None = None
        self._before_step: _Rollback | None = None
        self._early: tuple[float, float] | None = None
        self._signal_start = self.n_iter - max(1, int(SIGNAL_FRACTION * self.n_iter))
        self._gradient_sum: list[torch.Tensor] | None = None
        self._gradient_square: torch.Tensor | None = None

    # ------------------------------------------------------------------ running
    def run(
        self,
        step: Callable[[int], torch.Tensor],
        *,
        first: int = 0,
        reduce_gradients: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor] | None = None,
        after_step: Callable[[int], None] | None = None,
        checkpoint: Callable[[int], None] | None = None,
        checkpoint_every: int | None = None,
        hint: str = "lower lr",
    ) -> float:
        """Run iterations ``first .. n_iter - 1``; return the wall-clock seconds they took.

        Parameters
        ----------
        step
            ``step(it)`` zero-initialised gradients are accumulated into: it computes the loss
            of iteration ``it``, calls ``backward`` and returns the loss (detached).
        first
            First iteration (a resumed fit starts past 0; earlier losses must be in ``losses``).
        reduce_gradients
            Average gradients and loss over processes (distributed fits); returns the loss.
        after_step
            Called with ``it`` after each optimiser step (e.g. to adapt a time proposal).
        checkpoint, checkpoint_every
            ``checkpoint(n_done)`` is called every ``checkpoint_every`` iterations and at the end.
        hint
            What to change, appended to divergence messages.

        Raises
        ------
        DivergenceError
            When the loss or gradient became non-finite or the loss ran away; the last healthy
            weights, moving average and optimiser state are restored first.
        """
        start = time.perf_counter()
        max_norm = math.inf if self.settings.grad_clip is None else self.settings.grad_clip
        show = self.progress and first < self.n_iter
        bar = progress_bar(range(first, self.n_iter), initial=first, total=self.n_iter, desc=self.desc, show=show, mininterval=0.5)
        for it in bar:
            self.optimizer.zero_grad(set_to_none=True)
            loss = step(it)
            if reduce_gradients is not None:
                loss = reduce_gradients(self.params, loss)
            grad_norm = nn.utils.clip_grad_norm_(self.params, max_norm)
            value = float(loss)
            if not math.isfinite(value) or not torch.isfinite(grad_norm):
                reason = "non-finite loss" if not math.isfinite(value) else "non-finite gradient"
                # the weights of the last step gave this: go back to those that gave the previous,
                # finite loss (when it was healthy), else to the last healthy copy
                previous = it > 0 and self._healthy(it - 1)
                self._diverged(it, reason, f"{reason} ({value if not math.isfinite(value) else grad_norm.item()})", hint, bar, previous)
            self.losses[it] = value
            runaway = self._runaway(it)
            if runaway is not None:
                self._diverged(it, "runaway loss", runaway, hint, bar, False)
            if it % self.rollback_every == 0 and self._healthy(it):
                self._rollback = self._copy_state(it, self._rollback)
            if it >= self._signal_start:
                self._accumulate_gradient(grad_norm, max_norm)
            self._before_step = self._copy_state(it, self._before_step)
            self.optimizer.step()
            self.scheduler.step()
            self._update_ema(it)
            if after_step is not None:
                after_step(it)
            if it % 50 == 0:
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            if checkpoint is not None and checkpoint_every and ((it + 1) % checkpoint_every == 0 or it + 1 == self.n_iter):
                checkpoint(it + 1)
        bar.close()
        if self._gradient_sum is not None and float(self._gradient_square) > 0:
            total = sum(float(g.double().pow(2).sum()) for g in self._gradient_sum)
            self.gradient_signal = total / float(self._gradient_square)
        return time.perf_counter() - start

    def _accumulate_gradient(self, grad_norm: torch.Tensor, max_norm: float) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if self._gradient_sum is None:
            self._gradient_sum = [g.detach().clone() for g in grads]
        else:
            torch._foreach_add_(self._gradient_sum, [g.detach() for g in grads])
        square = torch.clamp(grad_norm.detach().double(), max=max_norm) ** 2
        self._gradient_square = square if self._gradient_square is None else self._gradient_square + square

    def _update_ema(self, it: int) -> None:
        if self.ema is None:
            return
        decay = min(self.settings.ema_decay, (1.0 + it) / (10.0 + it))
        torch._foreach_lerp_(self.ema, [p.detach() for p in self.params], 1.0 - decay)

    def _reference(self, it: int) -> tuple[float, float] | None:
        """Centre and scale the losses are compared with at iteration ``it`` (None: not known yet)."""
        if it >= EARLY_STOP:
            if self._early is None:  # the early losses are final once past them
                early = self.losses[EARLY_START:EARLY_STOP]
                centre = float(np.median(early))
                spread = float(np.median(np.abs(early - centre)))
                self._early = centre, max(abs(centre), spread, self.loss_scale or 0.0, RUNAWAY_FLOOR)
            return self._early
        if self.loss_scale is not None:
            return 0.0, max(self.loss_scale, RUNAWAY_FLOOR)
        return None

    def _runaway(self, it: int) -> str | None:
        reference = self._reference(it)
        if reference is None:
            return None
        centre, scale = reference
        recent = float(np.median(self.losses[max(0, it - RUNAWAY_WINDOW + 1) : it + 1]))
        if abs(recent - centre) > RUNAWAY_FACTOR * scale:
            return (
                f"runaway loss: the median of the last {min(it + 1, RUNAWAY_WINDOW)} losses is {recent:.4g}, "
                f"more than {RUNAWAY_FACTOR:g} times the reference scale {scale:.3g} away from {centre:.4g}"
            )
        return None

    def _healthy(self, it: int) -> bool:
        reference = self._reference(it)
        if reference is None:
            return it == 0 or self._rollback is None
        centre, scale = reference
        return abs(self.losses[it] - centre) <= HEALTHY_FACTOR * scale

    # ------------------------------------------------------------ rollback
    def _copy_state(self, it: int, into: _Rollback | None) -> _Rollback:
        """The weights, moving average and optimiser state about to be stepped at ``it``, copied
        into the buffers of ``into`` when it has them (no allocation once the state exists)."""
        tensors = self._state_tensors()
        if into is None or len(into.tensors) != len(tensors):
            return _Rollback(iteration=it, tensors=[t.detach().clone() for t in tensors],
                             scheduler=dict(self.scheduler.state_dict()))
        torch._foreach_copy_(into.tensors, [t.detach() for t in tensors])
        into.iteration, into.scheduler = it, dict(self.scheduler.state_dict())
        return into

    def _state_tensors(self) -> list[torch.Tensor]:
        tensors = [*self.params, *(self.ema or [])]
        for p in self.params:
            tensors.extend(v for v in self.optimizer.state.get(p, {}).values() if isinstance(v, torch.Tensor))
        tensors.extend(b for b in self.network.buffers())
        return tensors

    def _restore(self, snap: _Rollback | None) -> int:
        if snap is None:
            return 0
        tensors = self._state_tensors()
        if len(tensors) != len(snap.tensors):  # optimiser state created after the copy: start over
            for p in self.params:
                self.optimizer.state.pop(p, None)
            tensors = self._state_tensors()
            snap_tensors = snap.tensors[: len(tensors)]
        else:
            snap_tensors = snap.tensors
        with torch.no_grad():
            torch._foreach_copy_(tensors, snap_tensors)
        self.scheduler.load_state_dict(snap.scheduler)
        return snap.iteration

    def _diverged(self, it: int, reason: str, what: str, hint: str, bar: Iterable, previous_step: bool) -> None:
        kept = self._restore(self._before_step if previous_step else self._rollback)
        self.losses = self.losses[: kept + 1] if previous_step or self._rollback is not None else self.losses[:0]
        bar.close()
        raise DivergenceError(
            f"The fit stopped at iteration {it}: {what}. The model keeps the weights of iteration {kept}, "
            f"from before the divergence. {hint}",
            iteration=it, reason=reason,
        )

    def finalize(self) -> None:
        """Copy the moving average into the network (if any) and freeze it for prediction."""
        if self.ema is not None:
            with torch.no_grad():
                for param, avg in zip(self.params, self.ema):
                    param.copy_(avg)
        self.network.eval().requires_grad_(False)
