"""Map positions in a PCA representation back to gene space."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from ..trajectories import Trajectories
from ._support import check_support

__all__ = ["decode"]


def decode(adata: AnnData, X_rep: np.ndarray | Trajectories) -> AnnData:
    """Gene expression of positions in the PCA representation, ``X_rep @ PCsᵀ + mean``.

    Parameters
    ----------
    adata
        Data with ``varm['PCs']`` (from ``sc.pp.pca`` or :func:`trajinfer.pp.pca`).
    X_rep
        Positions of shape (n, d) with ``d`` at most the number of components, positions of
        shape (T, n, d) (e.g. ``traj.X``), or a :class:`~trajinfer.Trajectories`.

    Returns
    -------
    anndata.AnnData
        One row per position: the decoded expression in ``X`` (float32), the variables of
        ``adata`` in ``var``, the positions in ``obsm['X_pca']``. Positions of shape (T, n, d)
        give T·n rows in time-major order with ``obs['step']`` (0 .. T-1) and
        ``obs['particle']`` (0 .. n-1); a :class:`~trajinfer.Trajectories` adds ``obs['time']``
        and ``obs['weight']`` (the normalised weights times n, mean 1 at each step).
        ``obs['support_ratio']`` is each position's distance to the nearest observed cell in
        ``obsm['X_pca']`` over the cells' typical neighbour distance, and
        ``uns['off_support_fraction']`` the fraction beyond
        3 typical neighbour distances; a warning says when many positions are
        off the data (their decoded expression is extrapolation).

    Notes
    -----
    The feature means come from ``uns['pca']['mean']`` when present, else from ``adata.X``
    (scanpy centres ``X`` before its PCA). PCA truncation loses the discarded components.
    """
    if "PCs" not in adata.varm:
        raise KeyError("adata.varm has no 'PCs': decoding needs a PCA representation (run sc.pp.pca or tj.pp.pca).")
    positions = X_rep.X if isinstance(X_rep, Trajectories) else np.asarray(X_rep, dtype=np.float64)
    if positions.ndim not in (2, 3):
        raise ValueError(f"X_rep must have shape (n, d) or (T, n, d); got {positions.shape}.")
    loadings = np.asarray(adata.varm["PCs"], dtype=np.float64)
    d = positions.shape[-1]
    if d > loadings.shape[1]:
        raise ValueError(f"X_rep has {d} components but varm['PCs'] has {loadings.shape[1]}.")
    pca_info = adata.uns.get("pca", {})
    if "mean" in pca_info:
        mean = np.asarray(pca_info["mean"], dtype=np.float64)
    else:
        X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
        mean = X.mean(axis=0)
    rows = positions.reshape(-1, d)
    obs = pd.DataFrame(index=pd.RangeIndex(len(rows)).astype(str))
    if positions.ndim == 3:
        n_steps, n = positions.shape[:2]
        obs["step"] = np.repeat(np.arange(n_steps), n)
        obs["particle"] = np.tile(np.arange(n), n_steps)
    if isinstance(X_rep, Trajectories):
        obs["time"] = np.repeat(X_rep.times, X_rep.n_particles)
        obs["weight"] = (X_rep.weights * X_rep.n_particles).ravel()
    if "X_pca" in adata.obsm:
        check = check_support(rows, np.asarray(adata.obsm["X_pca"])[:, :d], what="decoded positions")
        obs["support_ratio"] = check.ratio
    decoded = AnnData(X=(rows @ loadings[:, :d].T + mean).astype(np.float32), obs=obs, var=adata.var.copy())
    decoded.obsm["X_pca"] = rows.astype(np.float32)
    if "X_pca" in adata.obsm:
        decoded.uns["off_support_fraction"] = check.off_support_fraction
    return decoded
