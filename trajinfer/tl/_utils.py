"""Helpers shared by the AnnData tools."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

__all__ = ["batched", "group_table", "label_order", "obs_column"]

CHUNK = 65_536


def batched(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], X: np.ndarray, t: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """Evaluate ``fn(X, t)`` in chunks of rows to bound memory."""
    return np.concatenate([fn(X[i : i + chunk], t[i : i + chunk]) for i in range(0, len(X), chunk)])


def obs_column(adata: AnnData, key: str, mask: np.ndarray) -> np.ndarray:
    """The string values of ``adata.obs[key]`` for the cells in ``mask``."""
    if key not in adata.obs:
        raise KeyError(f"adata.obs has no column {key!r}.")
    return adata.obs[key][mask].astype(str).to_numpy()


def label_order(adata: AnnData, key: str, labels: Any) -> list[str]:
    """The distinct ``labels`` (strings of ``adata.obs[key]`` values) in display order.

    The order of the column's categories when it is categorical (scanpy's Leiden clusters
    ``"0", "1", ..., "10"``), else numeric when every label reads as a number (0, 1, 2, 10, 12
    rather than 0, 1, 10, 12, 2), else alphabetical.
    """
    present = list(dict.fromkeys(str(label) for label in labels))
    column = adata.obs[key] if key in adata.obs else None
    if column is not None and isinstance(column.dtype, pd.CategoricalDtype):
        categories = [str(category) for category in column.cat.categories]
        return [c for c in categories if c in present] + sorted(set(present) - set(categories))
    try:
        return sorted(present, key=float)
    except ValueError:
        return sorted(present)


def group_table(
    probabilities: pd.DataFrame, groups: np.ndarray, weights: np.ndarray, index_name: str, columns_name: str,
    order: list[str] | None = None,
) -> pd.DataFrame:
    """Weighted mean of the rows of ``probabilities`` within each group; rows sum to one.

    Rows follow ``order`` (the groups' :func:`label_order`), columns those of ``probabilities``.
    """
    weighted = probabilities.mul(weights, axis=0).groupby(groups).sum()
    table = weighted.div(weighted.sum(axis=1), axis=0)
    if order is not None:
        table = table.reindex([label for label in order if label in table.index])
    table.index.name, table.columns.name = index_name, columns_name
    return table

