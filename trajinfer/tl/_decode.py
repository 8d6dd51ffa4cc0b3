"""Map positions in a PCA representation back to gene space."""

from __future__ import annotations

import numpy as np
from anndata import AnnData


def decode(adata: AnnData, X_rep: np.ndarray) -> np.ndarray:
    """Gene expression of positions in the PCA representation, ``X_rep @ PCsᵀ + mean``.

    Parameters
    ----------
    adata
        Data with ``varm['PCs']`` (from ``sc.pp.pca`` or :func:`trajinfer.pp.pca`).
    X_rep
        Positions of shape (..., d) with ``d`` at most the number of components; trajectories
        of shape (T, n, d) decode to (T, n, n_vars).

    Notes
    -----
    The feature means come from ``uns['pca']['mean']`` when present, else from ``adata.X``
    (scanpy centres ``X`` before its PCA). PCA truncation loses the discarded components.
    """
    if "PCs" not in adata.varm:
        raise KeyError("adata.varm has no 'PCs': decoding needs a PCA representation (run sc.pp.pca or tj.pp.pca).")
    X_rep = np.asarray(X_rep, dtype=np.float64)
    loadings = np.asarray(adata.varm["PCs"], dtype=np.float64)
    d = X_rep.shape[-1]
    if d > loadings.shape[1]:
        raise ValueError(f"X_rep has {d} components but varm['PCs'] has {loadings.shape[1]}.")
    pca_info = adata.uns.get("pca", {})
    if "mean" in pca_info:
        mean = np.asarray(pca_info["mean"], dtype=np.float64)
    else:
        X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
        mean = X.mean(axis=0)
    return X_rep @ loadings[:, :d].T + mean
