"""Checks a fitted model runs on itself: is the loss settled, are the velocities of the data's size?

After every fit :class:`~trajinfer.ActionMatching` stores the result of :func:`fit_diagnostics`
in ``diagnostics_`` and logs one summary line; when a check fails it also warns
(:class:`FitWarning`) and says what to change.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .paths import MarginalPath

if TYPE_CHECKING:
    from .estimator import ActionMatching

__all__ = ["FitWarning", "SPEED_FACTOR", "fit_diagnostics", "report_fit"]

logger = logging.getLogger(__name__)

#: The learned kinetic energy may exceed the data's reference kinetic energy by this factor
#: before the velocities are called far beyond the data's spread per unit time.
SPEED_FACTOR = 10.0
#: A loss whose last tenth still moves by more than this fraction of its scale is not settled.
DRIFT_FRACTION = 0.1


class FitWarning(RuntimeWarning):
    """A fit finished but its diagnostics say the model is probably wrong."""


def fit_diagnostics(
    model: ActionMatching, path: MarginalPath, *, loss_scale: float, generator: torch.Generator, status: str = "ok",
    n_samples: int = 2048,
) -> dict[str, Any]:
    """Diagnostics of a fitted model on its training path.

    Parameters
    ----------
    model
        The fitted estimator.
    path
        The path it was fitted on.
    loss_scale
        The data's reference kinetic energy (internal time; see the training loop).
    generator
        Random generator for the fresh samples.
    status
        ``"ok"`` or ``"diverged"`` (a stopped fit).
    n_samples
        Fresh samples of the path for the score and the velocity check.

    Returns
    -------
    dict
        ``status``; ``final_loss`` (mean of the last 5% of iterations); ``loss_drift`` (change
        of the mean loss between the last two twentieths of the fit, over the loss scale);
        ``score`` (:meth:`~trajinfer.ActionMatching.score` on fresh samples of the training
        path); ``kinetic_energy`` (½E|v|² of the learned velocity on fresh samples, internal
        time) and ``kinetic_ratio`` (over ``loss_scale``); ``fit_time``; ``warnings`` (a list of
        messages naming what to change).
    """
    losses = np.asarray(model.loss_curve_, dtype=float)
    tail = max(1, len(losses) // 20)
    final = float(np.mean(losses[-tail:])) if len(losses) else float("nan")
    previous = float(np.mean(losses[-2 * tail : -tail])) if len(losses) >= 2 * tail else final
    scale = max(abs(final), loss_scale, 1e-12)
    tau = torch.rand(n_samples, generator=generator, device=path.device)
    with torch.no_grad():
        x = path.sample(tau, generator)
    velocity, _, _ = model._internal_velocity(x, tau)
    kinetic = 0.5 * float((velocity.double() ** 2).sum(1).mean())
    score = model.score(path, n_samples=n_samples, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=path.device)))
    report = {
        "status": status,
        "final_loss": final,
        "loss_drift": abs(final - previous) / scale,
        "score": score,
        "kinetic_energy": kinetic,
        "kinetic_ratio": kinetic / max(loss_scale, 1e-12),
        "fit_time": float(model.fit_time_),
        "warnings": [],
    }
    notes = report["warnings"]
    if status != "ok":
        notes.append("the fit diverged and was stopped; the weights from before the divergence are kept")
    if not np.isfinite(kinetic) or report["kinetic_ratio"] > SPEED_FACTOR:
        notes.append(
            f"the learned velocities carry {report['kinetic_ratio']:.3g} times the kinetic energy of moving the data "
            "between its time points: cells will be pushed far from the data. Use interpolation='ot', a lower lr, "
            "or more smoothing"
        )
    if report["loss_drift"] > DRIFT_FRACTION:
        notes.append(
            f"the loss still moved by {100 * report['loss_drift']:.0f}% of its size over the last tenth of the fit: "
            "raise n_iter or lower lr"
        )
    return report


def report_fit(model: ActionMatching) -> None:
    """Log the one-line summary of a fit and warn if its diagnostics failed."""
    d = model.diagnostics_
    logger.info(
        "Fitted %s in %.1f s: %d iterations, final loss %.4g, score %.4g on fresh samples, kinetic energy %.3g x the data's.",
        model.method, d["fit_time"], model.n_iter_, d["final_loss"], d["score"], d["kinetic_ratio"],
    )
    for note in d["warnings"]:
        logger.warning("Fit check: %s.", note)
        warnings.warn(f"trajinfer fit check: {note}.", FitWarning, stacklevel=3)
