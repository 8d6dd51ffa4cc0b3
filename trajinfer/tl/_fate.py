"""Fate probabilities and cluster transition matrices from pushed cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._neighbors import NeighborKernel
from .._progress import BAR_MIN_CELLS, progress_bar
from ..estimator import ActionMatching
from ._push import simulate_cells
from ._record import FitRecord, cells_at, fit_record
from ._support import OFF_SUPPORT_FACTOR, OFF_SUPPORT_WARN_FRACTION, warn_off_support
from ._utils import group_table, label_order, obs_column

__all__ = ["FateResult", "fate"]

@dataclass
class FateResult:
    """Where the cells of an early time point end up.

    Attributes
    ----------
    probabilities
        Cells (of the early time) by clusters (of the later time): probability of landing in
        each cluster; rows sum to one. Clusters are in the order of the column's categories,
        else numeric when the labels are numbers (0, 1, 2, 10 rather than 0, 1, 10, 2).
    transition
        Source clusters by target clusters (like moscot's ``cell_transition``): weighted mean of
        ``probabilities`` over the cells of each source cluster; rows sum to one; both axes
        ordered as the clusters of ``probabilities``.
    off_support_fraction
        Fraction of pushed cells that landed more than 3 typical neighbour distances from
        every observed cell of the time point they were pushed to (mean over the steps and
        repeats); a warning is given above 0.1.
    """

    probabilities: pd.DataFrame
    transition: pd.DataFrame
    off_support_fraction: float = 0.0


@doc_params()
def fate(
    adata: AnnData,
    model: ActionMatching,
    from_time: Any,
    to_time: Any,
    cluster_key: str,
    *,
    source_key: str | None = None,
    n_neighbors: int = 30,
    n_repeats: int = 1,
    n_steps: int = 100,
    seed: int | None = 0,
) -> FateResult:
    """Fate of each early cell: the clusters of a later time point its descendants reach.

    The fate is carried back from ``to_time`` one observed time point at a time. The cells of
    ``to_time`` have their own cluster (probability one). The cells of each earlier observed
    time point are pushed by the model to the next observed time only, and a pushed cell takes
    the kernel-weighted mean of the fate probabilities of the ``n_neighbors`` observed cells
    nearest to where it lands (Gaussian weights; width half the median distance from an
    observed cell to its ``n_neighbors``-th neighbour there). Each cell's probabilities are
    then averaged over its own ``n_neighbors`` nearest cells of its time point, with the same
    kernel. This is a Markov chain over the observed cells, like CellRank's
    ``RealTimeKernel`` with the learned dynamics as its transitions.

    Why step by step and with kernels: a single push over a long time with the fitted noise
    sends some committed cells across the gap between branches, and a hard vote of the
    nearest cells turns each such cell into a confident wrong answer. Short pushes that land
    among observed cells, smooth kernel readouts and the average over the start cell's
    neighbourhood keep committed cells on their branch and leave cells before a decision
    near the population's split, instead of confidently on one side.

    Stochastic models average ``n_repeats`` simulations per step; unbalanced models weight
    cells in the transition matrix by their expected number of descendants at ``to_time``
    (the importance weights of each step, multiplied along the chain). Memory and time grow
    linearly with the number of cells (``n_neighbors`` weights per cell and step).

    Parameters
    ----------
    {adata_model}
    from_time, to_time
        Observed time labels; the observed time points between them are the chain's steps.
    cluster_key
        ``obs`` column with the clusters of the later cells.
    source_key
        ``obs`` column grouping the early cells in the transition matrix (default ``cluster_key``).
    n_neighbors
        Observed cells weighted by each kernel: where a pushed cell lands, and around each
        cell in its own time point. Default 30: enough cells for a smooth readout, few enough
        to stay within a branch.
    n_repeats
        Simulations averaged per step (stochastic models; one is enough for deterministic
        ones). Default 1: with the step-by-step readout, more repeats change little.
    n_steps
        Integration steps over the whole time span, shared among the chain's steps in
        proportion to their durations (at least one each).
    seed
        Seed of the first simulation; the others use the following integers. ``None`` draws
        fresh randomness.

    Returns
    -------
    FateResult
        Fate probabilities of the cells of ``from_time``, the cluster transition matrix and the
        off-support fraction of the pushes.
    """
    source_key = cluster_key if source_key is None else source_key
    record = fit_record(model)
    X = record.representation(adata)
    early, late = cells_at(adata, record, from_time), cells_at(adata, record, to_time)
    late_clusters = obs_column(adata, cluster_key, late)
    sources = obs_column(adata, source_key, early)
    classes = label_order(adata, cluster_key, late_clusters)
    chain = _chain(adata, record, from_time, to_time, early, late)

    # fate (probabilities) and expected descendants (growth) of the cells of the last step
    probabilities = (late_clusters[:, None] == np.asarray(classes)[None, :]).astype(np.float64)
    growth = np.ones(int(late.sum()))
    total = abs(record.label_time(to_time) - record.label_time(from_time))
    off_support, pushes = 0.0, 0
    backward = range(len(chain) - 2, -1, -1)
    landing = NeighborKernel(X[late], n_neighbors)
    for step in progress_bar(backward, desc="fate", show=sum(int(mask.sum()) for _, mask in chain) >= BAR_MIN_CELLS, leave=False):
        (label, here), (next_label, _) = chain[step], chain[step + 1]
        span = abs(record.label_time(next_label) - record.label_time(label))
        steps = max(1, int(np.ceil(n_steps * span / total)))
        read, weight = np.zeros((int(here.sum()), len(classes))), np.zeros(int(here.sum()))
        for repeat in range(n_repeats):
            run_seed = None if seed is None else seed + step * n_repeats + repeat
            traj = simulate_cells(model, record, X[here], label, next_label, n_steps=steps, seed=run_seed)
            distances, indices = landing.index.query(traj.X[-1], landing.k)
            kernel = landing.weights_of(distances, indices)
            read += kernel @ probabilities / n_repeats
            weight += np.exp(traj.log_weights[-1]) * (kernel @ growth) / n_repeats
            off_support += float(np.sum(distances[:, 0] > OFF_SUPPORT_FACTOR * max(landing.spacing, 1e-12)))
            pushes += len(traj.X[-1])
        own = NeighborKernel(X[here], n_neighbors)  # where the cells of the step before land
        probabilities, growth, landing = own.weights(X[here]) @ read, weight, own
    off_support = off_support / max(pushes, 1)
    if off_support > OFF_SUPPORT_WARN_FRACTION:
        warn_off_support(
            f"{100 * off_support:.0f}% of the cells pushed from {from_time} to {to_time} landed far from every observed "
            f"cell of the time point they were pushed to: their fate probabilities are extrapolation. Check the fit (model.diagnostics_).",
            stacklevel=3,
        )
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    prob_df = pd.DataFrame(probabilities, index=adata.obs_names[early], columns=classes)
    transition = group_table(prob_df, sources, growth / growth.sum(), f"{source_key} @ {from_time}", f"{cluster_key} @ {to_time}",
                             order=label_order(adata, source_key, sources))
    return FateResult(probabilities=prob_df, transition=transition, off_support_fraction=off_support)


def _chain(
    adata: AnnData, record: FitRecord, from_time: Any, to_time: Any, early: np.ndarray, late: np.ndarray
) -> list[tuple[Any, np.ndarray]]:
    """The observed time points from ``from_time`` to ``to_time`` (either direction), with their cells.

    The time labels of the fit whose times lie strictly between the two and that have cells in
    ``adata`` are the intermediate steps.
    """
    start, end = record.label_time(from_time), record.label_time(to_time)
    if start == end:
        raise ValueError(f"from_time and to_time are both at time {start}; choose two different time points.")
    lo, hi = min(start, end), max(start, end)
    column = adata.obs[record.time_key].astype(str).to_numpy()
    between = [(value, label) for label, value in zip(record.time_labels, record.time_values) if lo < value < hi]
    steps = [(label, column == label) for _, label in sorted(between, reverse=end < start)]
    return [(from_time, early), *[(label, mask) for label, mask in steps if mask.any()], (to_time, late)]
