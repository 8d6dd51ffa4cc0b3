"""Helpers shared by the AnnData tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..estimator import ActionMatching
from ..pp import representation

CHUNK = 65_536


def batched(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], X: np.ndarray, t: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Evaluate ``fn(X, t)`` in chunks of rows to bound memory."""
    return np.concatenate([fn(X[i : i + chunk], t[i : i + chunk]) for i in range(0, len(X), chunk)])


def model_metadata(model: ActionMatching) -> dict:
    """The AnnData bookkeeping recorded by :func:`trajinfer.tl.fit`."""
    meta = getattr(model, "metadata_", None)
    if not meta or "time_key" not in meta:
        raise ValueError("This model was not fitted with tj.fit on an AnnData; use model.simulate on arrays instead.")
    return meta


def model_representation(adata: AnnData, model: ActionMatching) -> np.ndarray:
    """The cells of ``adata`` in the representation the model was fitted on."""
    meta = model_metadata(model)
    X, _, _ = representation(adata, meta["use_rep"], meta["n_comps"])
    return X


def label_time(model: ActionMatching, label: Any) -> float:
    """Numeric time of a time label (or a number inside the fitted range)."""
    meta = model_metadata(model)
    for name, value in zip(meta["time_labels"], meta["time_values"]):
        if str(label) == name:
            return float(value)
    if isinstance(label, (int, float, np.integer, np.floating)):
        return float(label)
    raise ValueError(f"Unknown time label {label!r}; known labels: {meta['time_labels']}.")


def cells_at(adata: AnnData, model: ActionMatching, label: Any) -> np.ndarray:
    """Boolean mask of the cells observed at time label ``label``."""
    meta = model_metadata(model)
    column = adata.obs[meta["time_key"]]
    mask = (column.astype(str) == str(label)).to_numpy()
    if not mask.any():
        numeric = label_time(model, label)
        try:
            mask = np.isclose(column.to_numpy(dtype=float), numeric)
        except (TypeError, ValueError):
            mask = np.zeros(adata.n_obs, dtype=bool)
    if not mask.any():
        raise ValueError(f"No cells with {meta['time_key']} == {label!r}; known labels: {meta['time_labels']}.")
    return mask


def obs_column(adata: AnnData, key: str, mask: np.ndarray) -> np.ndarray:
    """The string values of ``adata.obs[key]`` for the cells in ``mask``."""
    if key not in adata.obs:
        raise KeyError(f"adata.obs has no column {key!r}.")
    return adata.obs[key][mask].astype(str).to_numpy()


def group_table(probabilities: pd.DataFrame, groups: np.ndarray, weights: np.ndarray, index_name: str, columns_name: str) -> pd.DataFrame:
    """Weighted mean of the rows of ``probabilities`` within each group; rows sum to one."""
    weighted = probabilities.mul(weights, axis=0).groupby(groups).sum()
    table = weighted.div(weighted.sum(axis=1), axis=0)
    table.index.name, table.columns.name = index_name, columns_name
    return table


def basis_key(adata: AnnData, basis: str) -> str:
    """``"X"`` or the ``obsm`` key of ``basis``, given as a key (``"X_umap"``) or a scanpy name (``"umap"``)."""
    if basis == "X":
        return basis
    for name in (basis, f"X_{basis}"):
        if name in adata.obsm:
            return name
    raise KeyError(f"Basis {basis!r} not found: adata.obsm has {list(adata.obsm.keys())}; pass basis='X' or an obsm key.")
