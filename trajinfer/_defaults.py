"""The one home of the package's defaults and option names.

:class:`~trajinfer.ActionMatching`, :func:`trajinfer.fit` and the command line read their
defaults from here, so that a default is changed in one place. The values were chosen by
leave-one-time-point-out validation on training data (``benchmarks/defaults.py``, results in
``benchmarks/results/defaults.md``) and by the ground-truth benchmark
(``benchmarks/groundtruth.py``).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "BATCH_SIZE", "ESTIMATOR_METHOD", "HIDDEN_DIMS", "HIDDEN_DIMS_SAMPLED", "INTERPOLATION", "INTERPOLATIONS", "LAPLACIANS", "LR", "LR_SAMPLED", "LR_SCHEDULES", "METHOD",
    "METHODS", "N_ITER", "N_ITER_SAMPLED", "PAIRINGS", "TIME_FREQUENCIES", "TIME_FREQUENCIES_SAMPLED", "TIME_PROPOSAL", "TIME_PROPOSALS", "Interpolation", "Laplacian", "LRSchedule",
    "Method", "Pairing", "TimeProposalName",
]

Method = Literal["am", "eam", "uam", "ueam"]
Interpolation = Literal["mixture", "ot", "sb"]
Pairing = Literal["auto", "full", "minibatch"]
Laplacian = Literal["auto", "exact", "hutchinson"]
TimeProposalName = Literal["quasi-uniform", "uniform", "adaptive"]
LRSchedule = Literal["cosine", "constant"]

METHODS: tuple[str, ...] = get_args(Method)
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)
PAIRINGS: tuple[str, ...] = get_args(Pairing)
LAPLACIANS: tuple[str, ...] = get_args(Laplacian)
TIME_PROPOSALS: tuple[str, ...] = get_args(TimeProposalName)
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)

#: Variant fitted by default (entropic: a stochastic model of cells, with ``sigma="auto"`` in ``tj.fit``).
METHOD: Method = "eam"
#: Variant of :class:`~trajinfer.ActionMatching` built without arguments. The estimator also takes
#: paths given by a function, whose diffusion coefficient nothing in the data identifies, so its
#: default needs no ``sigma``; :func:`trajinfer.fit` and the command line, which see the cells and
#: derive ``sigma`` from them, fit :data:`METHOD`.
ESTIMATOR_METHOD: Method = "am"
#: Interpolation between snapshots.
INTERPOLATION: Interpolation = "mixture"
#: Optimisation budget and network on snapshots (:func:`trajinfer.fit`, the command line, and
#: ``"auto"`` on a :class:`~trajinfer.SnapshotPath`), chosen by leave-one-time-point-out W1 and
#: the speed of the default fit (``defaults.md``, ``defaults_speed.md``).
N_ITER = 1500
HIDDEN_DIMS: tuple[int, ...] = (128, 128, 128)
BATCH_SIZE = 256
#: Iterations and widths of ``"auto"`` on every other path (fresh exact samples at every step):
#: the best error per second on the ground-truth benchmark (``groundtruth.md``).
N_ITER_SAMPLED = 4000
HIDDEN_DIMS_SAMPLED: tuple[int, ...] = (64, 64, 64)
#: Learning rate on snapshots (:func:`trajinfer.fit`, the command line, and ``lr="auto"`` on a
#: :class:`~trajinfer.SnapshotPath`): the best rate by leave-one-time-point-out W1.
LR = 1e-2
#: Learning rate of ``lr="auto"`` on every other path (a function or an interpolant drawing fresh
#: exact samples at every step, where the fit is limited by the gradient's noise): the best rate
#: on the ground-truth benchmark (``groundtruth.md``, with four time frequencies: mean error
#: over its ten problems 3.9%, against 4.2% at 5e-3 and 4.6% at 1e-2; with the one time
#: frequency of those paths, seed 0: 2.57%, against 2.93% at 1e-3, 2.61% at 2e-3, 2.59% at 5e-3
#: and 2.80% at 1e-2).
LR_SAMPLED = 3e-3
#: Sine/cosine pairs of the built-in potentials' time embedding with ``time_frequencies="auto"``:
#: on snapshots, the embedding the snapshot defaults and benchmarks were run with (one pair and
#: none tie with it by leave-one-time-point-out W1 within the seed spread, ``defaults.md``); on
#: every other path one, which fits less of the gradient's noise (``groundtruth.md``: mean error
#: over its ten problems 2.5%, against 3.9% with four and 2.6% with none).
TIME_FREQUENCIES = 4
TIME_FREQUENCIES_SAMPLED = 1
#: Times of the loss's integral: a randomly shifted low-discrepancy sequence.
TIME_PROPOSAL: TimeProposalName = "quasi-uniform"
