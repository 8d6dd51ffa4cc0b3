"""Gene expression along simulated trajectories, per fate, and the genes that go with each fate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._neighbors import NeighborKernel, knn
from ..estimator import ActionMatching
from ._decode import decode
from ._fate import FateResult
from ._push import simulate_cells
from ._record import cells_at, fit_record
from ._utils import label_order, obs_column

__all__ = ["DECODERS", "GeneTrends", "fate_drivers", "gene_trends"]

#: How a simulated position gets gene expression (see :func:`gene_trends`).
DECODERS = ("knn", "pca")


@dataclass
class GeneTrends:
    """Expression of genes along simulated trajectories, per fate.

    Attributes
    ----------
    table
        One row per fate, gene and time step, with the columns ``fate``, ``gene``, ``time`` (the
        data's time units), ``mean`` and ``sd`` (weighted over the simulated cells of the fate at
        that step), ``lower`` and ``upper`` (the weighted ``quantiles``) and ``n_cells`` (simulated
        cells of the fate).
    fates
        The fates (clusters of the later time) reached, in display order.
    genes
        The genes, in the order asked for.
    fractions
        Share of the simulated cells (weighted, at the last step) that end in each fate.
    observed_times
        The observed time points within the simulated span: label -> time.
    quantiles
        The quantiles of ``lower`` and ``upper``.
    cluster_key, time_key
        The ``obs`` columns of the fates and of the time labels.
    expression
        Where the expression comes from (``"X"``, ``"layers['counts']"``, ``"decoded PCA"``).
    """

    table: pd.DataFrame
    fates: list[str]
    genes: list[str]
    fractions: pd.Series
    observed_times: dict[str, float]
    quantiles: tuple[float, float]
    cluster_key: str
    time_key: str
    expression: str


@doc_params()
def gene_trends(
    adata: AnnData,
    model: ActionMatching,
    genes: str | Sequence[str],
    cluster_key: str,
    *,
    from_time: Any = None,
    to_time: Any = None,
    decoder: str = "knn",
    layer: str | None = None,
    n_neighbors: int = 10,
    n_steps: int = 50,
    stochastic: bool | None = None,
    quantiles: tuple[float, float] = (0.1, 0.9),
    seed: int | None = 0,
) -> GeneTrends:
    """Expression of ``genes`` along simulated trajectories, per fate, with bands across cells.

    The cells observed at ``from_time`` are simulated to ``to_time``. Each simulated cell's
    fate is the most common cluster among the ``n_neighbors`` observed cells of ``to_time``
    nearest to where it ends (as :func:`fate` assigns clusters). At every time step the
    expression of the simulated cells of each fate is summarised by its mean, standard
    deviation and two quantiles, weighted by the cells' importance weights (unbalanced
    methods).

    Parameters
    ----------
    {adata_model}
    genes
        Names in ``adata.var_names`` (a repeated name counts once).
    cluster_key
        ``obs`` column with the clusters of the cells at ``to_time``: the fates.
    from_time, to_time
        Time labels (default: the first and the last of the fit).
    decoder
        How a simulated position, a point of the fitted representation, gets gene expression:

        - ``"knn"`` (default): the Gaussian-kernel mean of the expression of its
          ``n_neighbors`` nearest observed cells (all time points) in the representation, as
          :func:`embed` maps positions onto an embedding. Works with any representation and
          any ``layer``, and stays within the observed expression (no negative counts);
          positions off the data take the expression of the nearest cells.
        - ``"pca"``: the linear decoding of :func:`decode`, ``X_rep @ PCsᵀ + mean``: exact for a
          PCA representation up to its truncation, but it extrapolates off the data. Needs a
          fit on ``X_pca`` with ``varm['PCs']``; decodes ``X``.
    layer
        ``adata.layers`` key of the expression for ``"knn"`` (default ``adata.X``).
    n_neighbors
        Observed cells per simulated cell, for its fate and for ``"knn"`` decoding.
    n_steps
        Time steps of the simulation (``n_steps + 1`` points in the table).
    stochastic, seed
        See :meth:`trajinfer.ActionMatching.simulate`.
    quantiles
        Lower and upper quantile of the band (default the 0.1 and 0.9 quantiles).

    Returns
    -------
    GeneTrends
        :func:`trajinfer.pl.gene_trends` draws it.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}.")
    lo_q, hi_q = (float(q) for q in quantiles)
    if not 0.0 <= lo_q < hi_q <= 1.0:
        raise ValueError(f"quantiles must be two increasing values in [0, 1], got {quantiles!r}.")
    genes = [genes] if isinstance(genes, str) else list(dict.fromkeys(genes))  # each gene once
    missing = [gene for gene in genes if gene not in adata.var_names]
    if missing or not genes:
        raise KeyError(f"Genes not in adata.var_names: {missing or genes}.")
    record = fit_record(model)
    from_time = record.time_labels[0] if from_time is None else from_time
    to_time = record.time_labels[-1] if to_time is None else to_time
    X = record.representation(adata)
    early, late = cells_at(adata, record, from_time), cells_at(adata, record, to_time)
    traj = simulate_cells(model, record, X[early], from_time, to_time, n_steps=n_steps, stochastic=stochastic, seed=seed)

    late_clusters = obs_column(adata, cluster_key, late)
    ends = _vote(X[late], late_clusters, traj.X[-1], n_neighbors)
    values, source = _expression_along(adata, X, traj.X, genes, decoder, layer, n_neighbors, record.use_rep)

    fates = label_order(adata, cluster_key, ends)
    rows = []
    for fate in fates:
        members = ends == fate
        stats = _weighted_summary(values[:, members], traj.weights[:, members], (lo_q, hi_q))
        for g, gene in enumerate(genes):
            rows.append(pd.DataFrame({
                "fate": fate, "gene": gene, "time": traj.times, "mean": stats[0][:, g], "sd": stats[1][:, g],
                "lower": stats[2][:, g], "upper": stats[3][:, g], "n_cells": int(members.sum()),
            }))
    table = pd.concat(rows, ignore_index=True)
    table["fate"] = pd.Categorical(table["fate"], categories=fates)
    final = traj.weights[-1]
    fractions = pd.Series([float(final[ends == fate].sum()) for fate in fates], index=fates, name="fraction") / float(final.sum())
    span = sorted((traj.times[0], traj.times[-1]))
    observed = {label: value for label, value in zip(record.time_labels, record.time_values) if span[0] <= value <= span[1]}
    return GeneTrends(
        table=table, fates=fates, genes=genes, fractions=fractions, observed_times=observed, quantiles=(lo_q, hi_q),
        cluster_key=cluster_key, time_key=record.time_key, expression=source,
    )


def fate_drivers(
    adata: AnnData, fates: FateResult | pd.DataFrame, *, genes: Sequence[str] | None = None, layer: str | None = None
) -> pd.DataFrame:
    """Genes by their correlation with each fate's probability, over the cells whose fates were computed.

    Parameters
    ----------
    adata
        The data holding the cells of ``fates`` (matched by ``obs_names``).
    fates
        A :func:`fate` result, or its ``probabilities`` (cells by fates).
    genes
        Genes to score (default: all of ``adata.var_names``).
    layer
        ``adata.layers`` key of the expression (default ``adata.X``).

    Returns
    -------
    pandas.DataFrame
        Genes by fates: the Pearson correlation, across the cells, of the gene's expression with
        the probability of the fate (NaN where either is constant). The drivers of a fate are
        the genes of highest correlation: ``drivers[fate].nlargest(10)``; ``drivers.idxmax()``
        names the first of each fate.

    Notes
    -----
    Pick the cells where the fates are being decided: from the root every cell has the same
    probabilities, and no gene correlates with them; from a time after the branches start to
    separate, the genes that mark each branch correlate with its fate.
    """
    probabilities = fates.probabilities if isinstance(fates, FateResult) else fates
    rows = adata.obs_names.get_indexer(probabilities.index)
    if (rows < 0).any():
        raise KeyError(f"{int((rows < 0).sum())} cells of the fate probabilities are not in adata.obs_names.")
    genes = list(adata.var_names) if genes is None else list(genes)
    expression = _expression_matrix(adata, genes, layer)[rows]
    P = probabilities.to_numpy(dtype=np.float64)
    E = expression - expression.mean(axis=0)
    P = P - P.mean(axis=0)
    scale = np.outer(np.sqrt((E**2).sum(axis=0)), np.sqrt((P**2).sum(axis=0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = np.where(scale > 0, (E.T @ P) / np.where(scale > 0, scale, 1.0), np.nan)
    table = pd.DataFrame(correlation, index=pd.Index(genes, name="gene"), columns=probabilities.columns)
    table.columns.name = "fate"
    return table


def _expression_matrix(adata: AnnData, genes: list[str], layer: str | None) -> np.ndarray:
    """Dense (n_obs, len(genes)) expression of ``genes`` from ``X`` or a layer."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"adata.layers has no {layer!r}; layers: {list(adata.layers.keys())}.")
    missing = [gene for gene in genes if gene not in adata.var_names]
    if missing:
        raise KeyError(f"Genes not in adata.var_names: {missing[:5]}.")
    matrix = adata.X if layer is None else adata.layers[layer]
    columns = adata.var_names.get_indexer(genes)
    block = matrix[:, columns]
    block = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
    return block.astype(np.float64)


def _expression_along(
    adata: AnnData, X: np.ndarray, positions: np.ndarray, genes: list[str], decoder: str, layer: str | None, n_neighbors: int,
    use_rep: str,
) -> tuple[np.ndarray, str]:
    """Expression (T, n, genes) at simulated ``positions`` (T, n, d), and where it comes from."""
    flat = positions.reshape(-1, positions.shape[-1])
    if decoder == "pca":
        if layer is not None:
            raise ValueError("decoder='pca' decodes X through the PCA loadings; a layer needs decoder='knn'.")
        if use_rep != "X_pca":
            raise ValueError(f"decoder='pca' needs a fit on X_pca with varm['PCs'], not on {use_rep!r}: use decoder='knn'.")
        decoded = decode(adata, flat)
        values = np.asarray(decoded[:, genes].X, dtype=np.float64)
        source = "decoded PCA"
    else:
        kernel = NeighborKernel(X, n_neighbors)
        values = np.asarray(kernel.weights(flat) @ _expression_matrix(adata, genes, layer))
        source = "X" if layer is None else f"layers[{layer!r}]"
    return values.reshape(positions.shape[:2] + (len(genes),)), source


def _weighted_summary(values: np.ndarray, weights: np.ndarray, quantiles: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Weighted mean, sd and two quantiles over cells of ``values`` (T, n, G) with ``weights`` (T, n); each (T, G)."""
    w = weights / weights.sum(axis=1, keepdims=True)
    mean = np.einsum("tn,tng->tg", w, values)
    sd = np.sqrt(np.maximum(np.einsum("tn,tng->tg", w, (values - mean[:, None, :]) ** 2), 0.0))
    order = np.argsort(values, axis=1)
    ordered = np.take_along_axis(values, order, axis=1)
    cumulative = np.cumsum(np.take_along_axis(np.broadcast_to(w[:, :, None], values.shape), order, axis=1), axis=1)
    centres = cumulative - 0.5 * np.take_along_axis(np.broadcast_to(w[:, :, None], values.shape), order, axis=1)
    bounds = []
    for q in quantiles:
        bound = np.empty(mean.shape)
        for t in range(values.shape[0]):
            for g in range(values.shape[2]):
                bound[t, g] = np.interp(q, centres[t, :, g], ordered[t, :, g])
        bounds.append(bound)
    return mean, sd, bounds[0], bounds[1]


def _vote(reference: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The most frequent label among the ``k`` nearest reference cells of each query (ties: the first label in sorted order)."""
    classes, codes = np.unique(labels, return_inverse=True)
    _, index = knn(reference, queries, min(k, len(reference)))
    counts = np.zeros((len(queries), len(classes)))
    np.add.at(counts, (np.repeat(np.arange(len(queries)), index.shape[1]), codes[index].ravel()), 1.0)
    return classes[counts.argmax(axis=1)]
