"""MIOFlow's dyngen-simulated bifurcating differentiation data."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ._download import cache_dir

__all__ = ["CELL_INFO_FILE", "EXPRESSION_FILE", "INFO_COLUMNS", "dyngen"]

logger = logging.getLogger(__name__)

EXPRESSION_FILE = "mioflow_dyngen_expression_bif.csv"
CELL_INFO_FILE = "mioflow_dyngen_cell_info.csv"
INFO_COLUMNS = ("cell_id", "step_ix", "simulation_i", "sim_time")


def dyngen(path: str | Path | Sequence[str | Path] | None = None, n_bins: int = 5) -> ad.AnnData:
    """Read MIOFlow's dyngen bifurcation data (1000 cells, 135 genes, 10 simulations).

    Parameters
    ----------
    path
        A directory holding ``mioflow_dyngen_expression_bif.csv`` and
        ``mioflow_dyngen_cell_info.csv``, or the two file paths ``(expression, cell_info)``.
        ``None`` looks in :func:`~trajinfer.datasets.cache_dir`. The files have no stable
        public URL, so they are never downloaded.
    n_bins
        Number of equal-width bins between the smallest and largest ``sim_time`` that give the
        time labels; bins are right-closed (the first also holds the smallest time), as in
        :func:`pandas.cut`.

    Returns
    -------
    anndata.AnnData
        ``X`` (float32) holds the expression values as stored in the file, which are
        ``log2(1 + counts)``, ready for ``sc.pp.pca``: do not normalise and log-transform them
        again. ``uns["log1p"]`` is ``{"base": 2}``, as after ``sc.pp.log1p(adata, base=2)``, so
        that scanpy's ``log1p`` warns that ``X`` is already log-transformed.
        ``layers["counts"]`` holds the counts recovered from ``X`` when they are exact (start
        from them for another normalisation). ``obs`` has ``sim_time``, ``simulation_i``, ``step_ix``, ``time_bin``
        (ordered categorical of ``sim_time`` ranges) and ``time`` (float bin index 0 ..
        ``n_bins - 1``). ``uns["dyngen"]["bin_edges"]`` holds the bin edges.

    Raises
    ------
    FileNotFoundError
        If a file is missing; the message says where to put it.
    ValueError
        If a file lacks the expected columns or the two files describe different cells.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1; got {n_bins!r}.")
    expression_file, info_file = _resolve_files(path)
    info = _read_cell_info(info_file)
    expression = _read_expression(expression_file, info)

    edges = np.linspace(info["sim_time"].min(), info["sim_time"].max(), n_bins + 1)
    codes = pd.cut(info["sim_time"], edges, labels=False, include_lowest=True).to_numpy(dtype=np.int64)
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    obs = info.drop(columns="cell_id").set_index(pd.Index(info["cell_id"].to_numpy(), name=None))
    obs["time_bin"] = pd.Categorical.from_codes(codes, categories=labels, ordered=True)
    obs["time"] = codes.astype(float)

    adata = ad.AnnData(expression.to_numpy(dtype=np.float32), obs=obs)
    adata.var_names = expression.columns.astype(str)
    counts = np.exp2(expression.to_numpy(dtype=np.float64)) - 1.0
    if np.allclose(counts, np.round(counts), atol=1e-6):
        adata.layers["counts"] = np.round(counts).astype(np.float32)
    else:
        logger.info("Expression values are not log2(1 + counts) of integer counts; no counts layer.")
    adata.uns["dyngen"] = {"bin_edges": edges, "n_bins": n_bins, "X": "log2(1 + counts) as stored in the file"}
    # what sc.pp.log1p(adata, base=2) records: scanpy's log1p then warns that X is already
    # log-transformed, and rank_genes_groups computes fold changes in the right base
    adata.uns["log1p"] = {"base": 2}
    return adata


def _resolve_files(path: str | Path | Sequence[str | Path] | None) -> tuple[Path, Path]:
    """The (expression, cell info) file paths, checked to exist."""
    if path is None or isinstance(path, (str, Path)):
        directory = cache_dir() if path is None else Path(path)
        if directory.is_file():
            raise ValueError(
                f"{directory} is a file; pass the directory holding {EXPRESSION_FILE} and "
                f"{CELL_INFO_FILE}, or the two paths as (expression, cell_info)."
            )
        files = (directory / EXPRESSION_FILE, directory / CELL_INFO_FILE)
    else:
        if len(path) != 2:
            raise ValueError(f"Pass a directory or exactly two paths (expression, cell_info); got {len(path)}.")
        files = (Path(path[0]), Path(path[1]))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"dyngen data not found: missing {', '.join(missing)}. These files (MIOFlow's dyngen "
            f"bifurcation data) are not downloadable from a stable URL: put {EXPRESSION_FILE} and "
            f"{CELL_INFO_FILE} in {cache_dir()} (or set $TRAJINFER_DATA), or pass path=."
        )
    return files


def _read_cell_info(file: Path) -> pd.DataFrame:
    """Per-cell simulation info, without empty columns and rows lacking a cell id."""
    info = pd.read_csv(file)
    missing = [c for c in INFO_COLUMNS if c not in info.columns]
    if missing:
        raise ValueError(f"{file} lacks the columns {missing}; expected {list(INFO_COLUMNS)}.")
    junk = info["cell_id"].isna()
    if junk.any():
        logger.debug("Dropping %d row(s) without a cell id from %s", int(junk.sum()), file)
    info = info.loc[~junk, list(INFO_COLUMNS)].reset_index(drop=True)
    info["cell_id"] = info["cell_id"].astype(str)
    if info["cell_id"].duplicated().any():
        raise ValueError(f"{file} has duplicated cell ids; each cell must appear once.")
    if info[list(INFO_COLUMNS[1:])].isna().any().any():
        raise ValueError(f"{file} has missing step_ix, simulation_i or sim_time values.")
    info["step_ix"] = info["step_ix"].astype(np.int64)
    info["simulation_i"] = info["simulation_i"].astype(np.int64)
    info["sim_time"] = info["sim_time"].astype(float)
    return info


def _read_expression(file: Path, info: pd.DataFrame) -> pd.DataFrame:
    """Expression table with rows in the order of ``info``.

    A first column of cell ids (or a header one field shorter than the rows) is matched
    against ``info["cell_id"]``; a file without ids is matched by row order.
    """
    expression = pd.read_csv(file)
    first = expression.columns[0]
    if not pd.api.types.is_numeric_dtype(expression[first]):
        expression = expression.set_index(first)
    if isinstance(expression.index, pd.RangeIndex):
        if len(expression) != len(info):
            raise ValueError(
                f"{file} has {len(expression)} rows but the cell info has {len(info)} cells, and it "
                "has no cell-id column to match them by; use the two files from the same data set."
            )
        expression.index = info["cell_id"].to_numpy()
    else:
        expression.index = expression.index.astype(str)
        unmatched = set(expression.index).symmetric_difference(info["cell_id"])
        if unmatched or expression.index.duplicated().any():
            raise ValueError(
                f"Cell ids of {file} and the cell info differ ({len(unmatched)} unmatched, e.g. "
                f"{sorted(unmatched)[:3]}); use the two files from the same data set."
            )
        expression = expression.loc[info["cell_id"].to_numpy()]
    non_numeric = [c for c in expression.columns if not pd.api.types.is_numeric_dtype(expression[c])]
    if non_numeric:
        raise ValueError(f"{file} has non-numeric expression columns {non_numeric[:3]}; expected genes only.")
    if not np.isfinite(expression.to_numpy(dtype=np.float64)).all():
        raise ValueError(f"{file} has missing or non-finite expression values.")
    return expression
