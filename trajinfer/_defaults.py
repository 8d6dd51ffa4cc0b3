"""The one home of the package's defaults, option names and ``"auto"`` rules.

:class:`~trajinfer.ActionMatching`, :func:`trajinfer.fit`, the command line and the baselines
read their defaults here, so that each is changed in one place. Snapshot defaults were chosen
by leave-one-time-point-out W1 on training data, the others by the ground-truth benchmark;
the measurements are in ``docs/benchmarks.rst``.

The ``"auto"`` rules that measure the data live, one home each, beside the code that measures:
``laplacian`` in :func:`trajinfer.derivatives.resolve_laplacian`, ``pairing`` and ``smoothing``
in :class:`~trajinfer.SnapshotPath`, ``sigma`` in :func:`trajinfer.tl.default_sigma`,
``growth_scale`` in :func:`trajinfer.fit` (the data's path length) and ``device`` in
``trajinfer._device``. The rules that depend only on the kind of path are :data:`AUTO_RULES`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

__all__ = [
    "AUTO_RULES", "BATCH_SIZE", "EMA_DECAY", "ESTIMATOR_METHOD", "GRAD_CLIP", "INTERPOLATION", "INTERPOLATIONS",
    "LAPLACIANS", "LR_SCHEDULES", "METHOD", "METHODS", "ON_SNAPSHOTS", "PAIRINGS", "TIME_PROPOSAL", "TIME_PROPOSALS", "Interpolation",
    "LRSchedule", "Laplacian", "Method", "Pairing", "TimeProposalName", "resolve_auto",
]

Method = Literal["am", "eam", "uam", "ueam"]
Interpolation = Literal["mixture", "ot", "sb", "learned"]
Pairing = Literal["auto", "full", "minibatch"]
Laplacian = Literal["auto", "exact", "hutchinson"]
TimeProposalName = Literal["quasi-uniform", "adaptive"]
LRSchedule = Literal["cosine", "constant"]

METHODS: tuple[str, ...] = get_args(Method)
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
PAIRINGS: tuple[str, ...] = get_args(Pairing)
LAPLACIANS: tuple[str, ...] = get_args(Laplacian)
TIME_PROPOSALS: tuple[str, ...] = get_args(TimeProposalName)
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)

#: Variant fitted on cells (:func:`trajinfer.fit`, the command line): a stochastic model, with a
#: ``sigma`` derived from the cells.
METHOD: Method = "eam"
#: Variant of :class:`~trajinfer.ActionMatching` built without arguments: it also fits paths given
#: by a function, whose diffusion coefficient nothing identifies, so it needs no ``sigma``.
ESTIMATOR_METHOD: Method = "am"
#: Interpolation between snapshots: smoothed mixtures, well-posed at any separation.
INTERPOLATION: Interpolation = "mixture"
#: Minibatch size: enough samples per step for a stable loss at a small network's cost.
BATCH_SIZE = 256
#: Maximum gradient norm: keeps a rare large minibatch loss from throwing the weights off.
GRAD_CLIP: float | None = 1.0
#: Decay of the moving average of the weights used for prediction: it averages out the last
#: steps' minibatch noise.
EMA_DECAY: float | None = 0.999
#: Times of the loss's integral: a randomly shifted low-discrepancy sequence, unbiased with a
#: lower variance than independent uniform times.
TIME_PROPOSAL: TimeProposalName = "quasi-uniform"

#: ``"auto"`` rules: each setting's value on snapshots (a :class:`~trajinfer.SnapshotPath`, a
#: fixed set of cells) and on every other path (a function or interpolant drawing fresh exact
#: samples at every step), with why.
AUTO_RULES: dict[str, tuple[Any, Any, str]] = {
    "n_iter": (1500, 4000, "fresh samples keep lowering the error with more iterations; on snapshots "
                           "more iterations fit the finite sample"),
    "hidden_dims": ((128, 128, 128), (64, 64, 64), "a narrower network's cheaper steps buy more of the "
                                                   "iterations a sampled path needs"),
    "lr": (1e-2, 3e-3, "noisy gradients from fresh samples need a smaller step; snapshots fit best "
                       "at the larger rate"),
    "time_frequencies": (4, 1, "fewer time features fit less of the gradient's noise on sampled paths"),
}

#: The values ``"auto"`` takes on snapshots: what :func:`trajinfer.fit` fits cells with.
ON_SNAPSHOTS: dict[str, Any] = {name: rule[0] for name, rule in AUTO_RULES.items()}


def resolve_auto(name: str, value: Any, *, on_snapshots: bool) -> Any:
    """``value``, or the ``"auto"`` rule's value of setting ``name`` for this kind of path.

    Parameters
    ----------
    name
        A key of :data:`AUTO_RULES`.
    value
        The setting as given; any value other than the string ``"auto"`` is returned as it is.
    on_snapshots
        Whether the path is a :class:`~trajinfer.SnapshotPath`.
    """
    if not (isinstance(value, str) and value == "auto"):
        return value
    on_snapshot_paths, elsewhere, _ = AUTO_RULES[name]
    return on_snapshot_paths if on_snapshots else elsewhere
