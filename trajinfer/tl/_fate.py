"""Fate probabilities and cluster transition matrices from pushed cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from sklearn.neighbors import KNeighborsClassifier

from ..estimator import ActionMatching
from ._push import simulate
from ._utils import cells_at, model_representation


@dataclass
class FateResult:
    """Where the cells of an early time point end up.

    Attributes
    ----------
    probabilities
        Cells (of the early time) by clusters (of the later time): probability of landing in
        each cluster; rows sum to one.
    transition
        Source clusters by target clusters (like moscot's ``cell_transition``): weighted mean of
        ``probabilities`` over the cells of each source cluster; rows sum to one.
    """

    probabilities: pd.DataFrame
    transition: pd.DataFrame


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
    adata, model
        The data and a model from :func:`trajinfer.fit`.
    from_time, to_time
        Observed time labels.
    cluster_key
        ``obs`` column with the clusters of the later cells.
    source_key
        ``obs`` column grouping the early cells in the transition matrix (default ``cluster_key``).
    n_neighbors, n_repeats, n_steps, seed
        Neighbours for cluster assignment, simulations to average, steps, seed.
    """
    if cluster_key not in adata.obs:
        raise KeyError(f"adata.obs has no column {cluster_key!r}.")
    source_key = cluster_key if source_key is None else source_key
    if source_key not in adata.obs:
        raise KeyError(f"adata.obs has no column {source_key!r}.")
    X = model_representation(adata, model)
    early, late = cells_at(adata, model, from_time), cells_at(adata, model, to_time)
    late_clusters = adata.obs[cluster_key][late].astype(str).to_numpy()
    classifier = KNeighborsClassifier(n_neighbors=min(n_neighbors, int(late.sum()))).fit(X[late], late_clusters)

    probabilities = np.zeros((int(early.sum()), len(classifier.classes_)))
    weights = np.zeros(int(early.sum()))
    for repeat in range(n_repeats):
        traj = simulate(adata, model, from_time, to_time, n_steps=n_steps, seed=None if seed is None else seed + repeat)
        probabilities += classifier.predict_proba(traj.X[-1]) / n_repeats
        weights += traj.weights[-1] / n_repeats
    names = adata.obs_names[early]
    prob_df = pd.DataFrame(probabilities, index=names, columns=classifier.classes_)
    sources = adata.obs[source_key][early].astype(str).to_numpy()
    weighted = prob_df.mul(weights, axis=0).groupby(sources).sum()
    transition = weighted.div(weighted.sum(axis=1), axis=0)
    transition.index.name, transition.columns.name = f"{source_key} @ {from_time}", f"{cluster_key} @ {to_time}"
    return FateResult(probabilities=prob_df, transition=transition)
