"""Growth rates of unbalanced models per cell and per cluster."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from ..estimator import ActionMatching
from ..losses import is_unbalanced
from ..pp import time_labels
from ._record import fit_record
from ._utils import batched

__all__ = ["growth_rates"]


def growth_rates(adata: AnnData, model: ActionMatching, cluster_key: str | None = None) -> pd.Series | pd.DataFrame:
    """Growth rate ``g_t(x)`` of every cell at its own time (per time unit).

    Returns a Series indexed by cell; with ``cluster_key``, a DataFrame of mean growth rate by
    cluster (rows) and time label (columns). Positive means expanding, negative shrinking.
    """
    if not is_unbalanced(model.method):
        raise ValueError("growth_rates needs a model fitted with method='uam' or 'ueam'.")
    record = fit_record(model)
    times = time_labels(adata, record.time_key).values
    rates = pd.Series(batched(model.growth, record.representation(adata), times), index=adata.obs_names, name="growth")
    if cluster_key is None:
        return rates
    if cluster_key not in adata.obs:
        raise KeyError(f"adata.obs has no column {cluster_key!r}.")
    frame = pd.DataFrame({"growth": rates.to_numpy(), "cluster": adata.obs[cluster_key].to_numpy(), "time": adata.obs[record.time_key].to_numpy()})
    return frame.pivot_table(index="cluster", columns="time", values="growth", aggfunc="mean", observed=True)
