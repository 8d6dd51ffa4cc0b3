"""Fate probabilities and cluster transition matrices from pushed cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.neighbors import KNeighborsClassifier

from .._docs import doc_params
from ..estimator import ActionMatching
from ._push import simulate_cells
from ._record import cells_at, fit_record
from ._support import OFF_SUPPORT_WARN_FRACTION, SupportIndex, check_support, warn_off_support
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
        every observed cell of the later time (mean over repeats); a warning is given above
        0.1.
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
    n_neighbors: int = 10,
    n_repeats: int = 1,
    n_steps: int = 100,
    seed: int | None = 0,
) -> FateResult:
    """Push early cells to a later observed time point and read off their clusters.

    Each pushed cell gets the cluster distribution of its ``n_neighbors`` nearest observed cells
    at ``to_time`` (in the fitted representation). Stochastic models average ``n_repeats``
    simulations; unbalanced models weight cells by their final importance weights in the
    transition matrix.

    Parameters
    ----------
    {adata_model}
    from_time, to_time
        Observed time labels.
    cluster_key
        ``obs`` column with the clusters of the later cells.
    source_key
        ``obs`` column grouping the early cells in the transition matrix (default ``cluster_key``).
    {cluster_table}
    """
    source_key = cluster_key if source_key is None else source_key
    record = fit_record(model)
    X = record.representation(adata)
    early, late = cells_at(adata, record, from_time), cells_at(adata, record, to_time)
    late_clusters = obs_column(adata, cluster_key, late)
    sources = obs_column(adata, source_key, early)
    classifier = KNeighborsClassifier(n_neighbors=min(n_neighbors, int(late.sum()))).fit(X[late], late_clusters)
    support, start = SupportIndex(X[late]), X[early]

    probabilities = np.zeros((int(early.sum()), len(classifier.classes_)))
    weights = np.zeros(int(early.sum()))
    off_support = 0.0
    for repeat in range(n_repeats):
        traj = simulate_cells(model, record, start, from_time, to_time, n_steps=n_steps, seed=None if seed is None else seed + repeat)
        probabilities += classifier.predict_proba(traj.X[-1]) / n_repeats
        weights += traj.weights[-1] / n_repeats
        off_support += check_support(traj.X[-1], support, warn=False).off_support_fraction / n_repeats
    if off_support > OFF_SUPPORT_WARN_FRACTION:
        warn_off_support(
            f"{100 * off_support:.0f}% of the cells pushed from {from_time} to {to_time} landed far from every observed "
            f"cell of {to_time}: their fate probabilities are extrapolation. Check the fit (model.diagnostics_).",
            stacklevel=3,
        )
    prob_df = pd.DataFrame(probabilities, index=adata.obs_names[early], columns=classifier.classes_)
    prob_df = prob_df[label_order(adata, cluster_key, classifier.classes_)]
    transition = group_table(prob_df, sources, weights, f"{source_key} @ {from_time}", f"{cluster_key} @ {to_time}",
                             order=label_order(adata, source_key, sources))
    return FateResult(probabilities=prob_df, transition=transition, off_support_fraction=off_support)
