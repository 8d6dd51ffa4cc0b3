"""Helpers shared by the AnnData tools."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from anndata import AnnData

__all__ = ["batched", "group_table", "obs_column"]

CHUNK = 65_536


def batched(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], X: np.ndarray, t: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Evaluate ``fn(X, t)`` in chunks of rows to bound memory."""
    return np.concatenate([fn(X[i : i + chunk], t[i : i + chunk]) for i in range(0, len(X), chunk)])


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

