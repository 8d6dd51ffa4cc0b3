"""Ancestors of the cells of a later time point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._docs import doc_params
from .._neighbors import knn
from ..estimator import ActionMatching
from ..losses import is_entropic
from ._push import simulate_cells
from ._record import FitRecord, cells_at, fit_record
from ._utils import group_table, label_order, obs_column

__all__ = ["PullResult", "pull"]


@dataclass
class PullResult:
    """Where the cells of a later time point come from.

    Attributes
    ----------
    probabilities
        Later cells by clusters (of the earlier time): probability that the cell's ancestor
        is in each cluster; rows sum to one.
    transition
        Groups of later cells by earlier clusters: mean of ``probabilities`` over the cells
        of each group, the composition of each group's ancestry; rows sum to one.
    ancestors
        Sparse (later cells, earlier cells), row-stochastic: the weight of each observed
        earlier cell as the ancestor of each later cell. ``ancestors @ X_early`` are the mean
        ancestor positions; the column means give the ancestors of the whole population.
    ancestor_names
        The earlier cells (columns of ``ancestors``).
    """

    probabilities: pd.DataFrame
    transition: pd.DataFrame
    ancestors: sp.csr_matrix
    ancestor_names: pd.Index


@doc_params()
def pull(
    adata: AnnData,
    model: ActionMatching,
    from_time: Any,
    to_time: Any,
    cluster_key: str,
    *,
    source_key: str | None = None,
    n_neighbors: int = 10,
    n_repeats: int = 1,
    n_steps: int = 100,
    seed: int | None = 0,
) -> PullResult:
    """Ancestors at the earlier ``to_time`` of the cells observed at the later ``from_time``.

    Deterministic methods (``am``, ``uam``) integrate the learned ODE backward from each later
    cell; its ancestors are the ``n_neighbors`` observed earlier cells nearest to where it
    lands, with equal weights (as :func:`fate` assigns clusters).

    Stochastic methods (``eam``, ``ueam``) cannot run backward: the reverse-time SDE needs the
    score of :math:`q_t`, which Action Matching does not learn. They reverse the forward
    transition operator with Bayes' rule instead. The earlier cells :math:`x_j` are simulated
    forward to ``from_time`` (``n_repeats`` times), and a later cell :math:`y_i` gets

    .. math::

        P(j \\mid y_i) \\propto \\sum_r w_{jr}\\, \\mathbb{1}[\\,y_{jr} \\in N_k(y_i)\\,],

    where :math:`y_{jr}` is repeat :math:`r` of cell :math:`j` pushed forward, :math:`w_{jr}`
    its final importance weight (1 unless unbalanced: cells that grow have more
    descendants), and :math:`N_k(y_i)` the ``n_neighbors · n_repeats`` pushed cells nearest to
    :math:`y_i`. This is the posterior of the ancestor under a uniform prior over the observed
    earlier cells, with the forward density of each cell estimated by a ball kernel whose
    radius is the kNN radius at :math:`y_i` (the same for every :math:`j`, so it cancels).

    Parameters
    ----------
    {adata_model}
    from_time, to_time
        Observed time labels, ``from_time`` later than ``to_time``.
    cluster_key
        ``obs`` column with the clusters of the earlier cells.
    source_key
        ``obs`` column grouping the later cells in ``transition`` (default ``cluster_key``).
    n_neighbors, n_repeats, n_steps, seed
        Neighbours per cell, forward simulations of the stochastic scheme, steps, seed.
    """
    record = fit_record(model)
    if record.label_time(from_time) <= record.label_time(to_time):
        raise ValueError(f"pull goes back in time: from_time={from_time!r} must be later than to_time={to_time!r} (see tl.fate).")
    source_key = cluster_key if source_key is None else source_key
    X = record.representation(adata)
    late, early = cells_at(adata, record, from_time), cells_at(adata, record, to_time)
    early_clusters = obs_column(adata, cluster_key, early)
    groups = obs_column(adata, source_key, late)
    if is_entropic(model.method):
        ancestors = _bayes_ancestors(model, record, X[early], X[late], from_time, to_time, n_neighbors, n_repeats, n_steps, seed)
    else:
        traj = simulate_cells(model, record, X[late], from_time, to_time, n_steps=n_steps, stochastic=False)
        ancestors = _knn_rows(X[early], traj.X[-1], n_neighbors)
    classes, codes = np.unique(early_clusters, return_inverse=True)
    onehot = sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), len(classes)))
    probabilities = pd.DataFrame((ancestors @ onehot).toarray(), index=adata.obs_names[late], columns=classes)
    probabilities = probabilities[label_order(adata, cluster_key, classes)]
    transition = group_table(probabilities, groups, np.ones(len(groups)), f"{source_key} @ {from_time}", f"{cluster_key} @ {to_time}",
                             order=label_order(adata, source_key, groups))
    return PullResult(probabilities=probabilities, transition=transition, ancestors=ancestors, ancestor_names=adata.obs_names[early])


def _knn_rows(reference: np.ndarray, queries: np.ndarray, n_neighbors: int) -> sp.csr_matrix:
    """Equal weights on the ``n_neighbors`` reference rows nearest to each query."""
    k = min(n_neighbors, len(reference))
    _, index = knn(reference, queries, k)
    return sp.csr_matrix((np.full(index.size, 1.0 / k), index.ravel(), np.arange(0, index.size + 1, k)), shape=(len(queries), len(reference)))


def _bayes_ancestors(
    model: ActionMatching, record: FitRecord, early: np.ndarray, late: np.ndarray, from_time: Any, to_time: Any,
    n_neighbors: int, n_repeats: int, n_steps: int, seed: int | None,
) -> sp.csr_matrix:
    """Posterior weights of the ``early`` cells as ancestors of the ``late`` ones (see :func:`pull`)."""
    ends, weights = [], []
    for repeat in range(n_repeats):
        traj = simulate_cells(model, record, early, to_time, from_time, n_steps=n_steps, seed=None if seed is None else seed + repeat)
        ends.append(traj.X[-1])
        weights.append(traj.weights[-1] * traj.n_particles)
    n_early = ends[0].shape[0]
    k = min(n_neighbors * n_repeats, n_early * n_repeats)
    _, index = knn(np.concatenate(ends), late, k)
    rows = np.repeat(np.arange(len(late)), k)
    values = np.concatenate(weights)[index.ravel()]
    ancestors = sp.csr_matrix((values, (rows, index.ravel() % n_early)), shape=(len(late), n_early))  # duplicates add up
    return sp.csr_matrix(sp.diags(1.0 / np.asarray(ancestors.sum(axis=1)).ravel()) @ ancestors)
