"""Checks a fitted model runs on itself: is the loss settled, did the fit converge (or did its
gradients still point one way at the end), are the velocities of the data's size, does it move
its own first snapshot toward its last?

After every fit :class:`~trajinfer.ActionMatching` stores the result of :func:`fit_diagnostics`
on its :class:`~trajinfer.Dynamics` in ``diagnostics_`` and logs one summary line (printed by
default; ``tj.settings.verbosity``); when a check fails it also warns (:class:`FitWarning`) and
says what to change.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import metrics
from ._settings import WARNED
from .paths import MarginalPath, SnapshotPath

if TYPE_CHECKING:
    from .dynamics import Dynamics

__all__ = ["FitWarning", "SIGNAL_LIMIT", "SPEED_FACTOR", "fit_diagnostics", "report_fit", "transport_check"]

logger = logging.getLogger(__name__)

#: The learned kinetic energy may exceed the data's reference kinetic energy by this factor
#: before the velocities are called far beyond the data's spread per unit time.
SPEED_FACTOR = 10.0
#: A loss whose last tenth still moves by more than this fraction of its scale is not settled.
DRIFT_FRACTION = 0.1
#: A gradient signal (:class:`~trajinfer.training.TrainingLoop`) above this over the last tenth of
#: the fit says the gradients still pointed one way when the learning rate had decayed: the fit
#: ended before it converged. Noise around a minimum gives about 1; fits stopped far from a minimum
#: give tens (the snapshot benchmarks' learning-rate sweep).
SIGNAL_LIMIT = 2.5
#: Cells of the first and last snapshots compared by the transport check, and its Euler steps.
TRANSPORT_CELLS, TRANSPORT_STEPS = 200, 50


def transport_check(model: Dynamics, path: SnapshotPath, generator: torch.Generator) -> dict[str, float]:
    """W1 from the first snapshot's cells, simulated to the last time point, to the last
    snapshot, beside W1 from those cells left where they are (subsamples of ``TRANSPORT_CELLS``).

    On its own training data a fitted model beats not moving by a wide margin; a model that
    does not (``transport_ratio`` ≥ 1) has learned something other than the data's motion.
    """
    first, last = path.snapshot(0), path.snapshot(path.n_times - 1)
    first = first[torch.randperm(len(first), generator=generator, device=first.device)[:TRANSPORT_CELLS]].cpu().numpy()
    last = last[torch.randperm(len(last), generator=generator, device=last.device)[:TRANSPORT_CELLS]].cpu().numpy()
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
    traj = model.simulate(first, path.t_range[0], path.t_range[1], n_steps=TRANSPORT_STEPS, seed=seed, progress=False)
    pushed, weights = traj.at(path.t_range[1])
    moved = metrics.w1(pushed, last, wa=weights) if np.isfinite(pushed).all() else float("inf")
    still = metrics.w1(first, last)
    return {"transport_w1": moved, "no_move_w1": still, "transport_ratio": moved / max(still, 1e-12)}


class FitWarning(RuntimeWarning):
    """A fit finished but its diagnostics say the model is probably wrong."""


def fit_diagnostics(
    model: Dynamics, path: MarginalPath, *, losses: np.ndarray, fit_time: float, lr: float, loss_scale: float,
    generator: torch.Generator, status: str = "ok", gradient_signal: float = float("nan"), n_samples: int = 2048,
    score_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Diagnostics of fitted dynamics on their training path.

    Parameters
    ----------
    model
        The fitted dynamics.
    path
        The path they were fitted on.
    losses
        Loss of every iteration of the fit.
    fit_time
        Wall-clock seconds of the fit.
    lr
        The fit's learning rate (named in the advice of a failed check).
    loss_scale
        The data's reference kinetic energy (internal time; see the training loop).
    generator
        Random generator for the fresh samples.
    status
        ``"ok"`` or ``"diverged"`` (a stopped fit).
    gradient_signal
        The training loop's gradient signal over the last tenth of the fit
        (:class:`~trajinfer.training.TrainingLoop`; NaN if unknown).
    n_samples
        Fresh samples of the path for the score and the velocity check.
    score_options
        Loss settings of :meth:`~trajinfer.Dynamics.score` (batch size, Laplacian, ...).

    Returns
    -------
    dict
        ``status``; ``final_loss`` (mean of the last twentieth of the iterations); ``loss_drift`` (change
        of the mean loss between the last two twentieths of the fit, over the loss scale);
        ``gradient_signal`` (as passed: about 1 when the last gradients were noise around a
        minimum, large when they still pointed one way);
        ``score`` (:meth:`~trajinfer.Dynamics.score` on fresh samples of the training
        path); ``kinetic_energy`` (½E|v|² of the learned velocity on fresh samples, internal
        time) and ``kinetic_ratio`` (over ``loss_scale``); ``fit_time``; on a
        :class:`~trajinfer.SnapshotPath` also ``transport_w1``, ``no_move_w1`` and
        ``transport_ratio`` (:func:`transport_check`); ``warnings`` (a list of messages naming what
        to change).
    """
    losses = np.asarray(losses, dtype=float)
    tail = max(1, len(losses) // 20)
    final = float(np.mean(losses[-tail:])) if len(losses) else float("nan")
    previous = float(np.mean(losses[-2 * tail : -tail])) if len(losses) >= 2 * tail else final
    scale = max(abs(final), loss_scale, 1e-12)
    tau = torch.rand(n_samples, generator=generator, device=path.device)
    with torch.no_grad():
        x = path.sample(tau, generator)
    velocity, _, _ = model.field(x, tau)
    kinetic = 0.5 * float((velocity.double() ** 2).sum(1).mean())
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=path.device))
    score = model.score(path, n_samples=n_samples, seed=seed, **(score_options or {}))
    report = {
        "status": status,
        "final_loss": final,
        "loss_drift": abs(final - previous) / scale,
        "gradient_signal": float(gradient_signal),
        "score": score,
        "kinetic_energy": kinetic,
        "kinetic_ratio": kinetic / max(loss_scale, 1e-12),
        "fit_time": float(fit_time),
        "warnings": [],
    }
    if isinstance(path, SnapshotPath):
        report.update(transport_check(model, path, generator))
    notes = report["warnings"]
    if status != "ok":
        notes.append("the fit diverged and was stopped; the weights from before the divergence are kept")
    if not np.isfinite(kinetic) or report["kinetic_ratio"] > SPEED_FACTOR:
        notes.append(
            f"the learned velocities carry {report['kinetic_ratio']:.3g} times the kinetic energy of moving the data "
            "between its time points: cells will be pushed far from the data. Use interpolation='ot', a lower lr, "
            "or more smoothing"
        )
    if report.get("transport_ratio", 0.0) >= 1.0:
        notes.append(
            f"simulated from the first time point, the cells end farther from the last snapshot (W1 "
            f"{report['transport_w1']:.3g}) than cells that do not move (W1 {report['no_move_w1']:.3g}): the model has not "
            "learned the data's motion. Try another interpolation, a lower lr or more iterations"
        )
    if report["gradient_signal"] > SIGNAL_LIMIT:
        notes.append(
            f"the fit ended before it converged: over its last tenth the gradients still pointed one way (gradient "
            f"signal {report['gradient_signal']:.3g}, against about 1 for noise around a minimum). Raise lr "
            f"(lr={lr:g}) or n_iter (n_iter={len(losses)})"
        )
    if report["loss_drift"] > DRIFT_FRACTION:
        notes.append(
            f"the loss still moved by {100 * report['loss_drift']:.0f}% of its size over the last tenth of the fit: "
            "raise n_iter or lower lr"
        )
    return report


def report_fit(d: dict[str, Any], *, method: str, n_iter: int) -> None:
    """Log the one-line summary of a fit from its diagnostics ``d`` and warn if a check failed.

    The summary is logged at INFO: shown by default (``tj.settings.verbosity`` 2), hidden at
    verbosity 0 and 1.
    """
    transport = (f"; first snapshot pushed to the last: W1 {d['transport_ratio']:.2f} x not moving"
                 if "transport_ratio" in d else "")
    logger.info(
        "Fitted %s in %.1f s: %d iterations, final loss %.4g, score %.4g on fresh samples, gradient signal %.2f "
        "(about 1 when converged), kinetic energy %.3g x the data's%s.",
        method, d["fit_time"], n_iter, d["final_loss"], d["score"], d["gradient_signal"],
        d["kinetic_ratio"], transport,
    )
    for note in d["warnings"]:
        logger.warning("Fit check: %s.", note, extra=WARNED)  # printed once, by the warning
        warnings.warn(f"trajinfer fit check: {note}.", FitWarning, stacklevel=3)
