"""Preprocessing helpers for AnnData: time labels and the representation used for fitting."""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

logger = logging.getLogger(__name__)

__all__ = ["TimeLabels", "time_labels", "representation", "pca", "write_pca"]

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
# an optional word prefix ("day", "D", "E"), a number or a range of two ("0-3", "6 to 9"), an
# optional word suffix ("h", "hpf"); words are letters and underscores, spaces may separate parts
_LABEL = re.compile(
    rf"^\s*(?P<prefix>[^\W\d]*)\s*(?P<start>{_NUMBER})(?:\s*(?:-|–|to)\s*(?P<end>{_NUMBER}))?\s*(?P<suffix>[^\W\d]*)\s*$"
)


@dataclass
class TimeLabels:
    """Numeric times of the cells and the mapping from the original labels.

    Attributes
    ----------
    values
        Numeric time of each cell, shape (n_obs,).
    mapping
        Original label -> numeric time, in increasing time order.
    """

    values: np.ndarray
    mapping: dict

    def __getitem__(self, label: object) -> float:
        return self.mapping[label]


def _label_to_number(label: object) -> tuple[float, str] | None:
    """The time a label reads as and its unit (the words around the number), or ``None``."""
    if isinstance(label, pd.Interval):
        return float(label.mid), "interval"
    try:
        return float(label), "<n>"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        pass
    match = _LABEL.match(str(label))
    if match is None:
        return None
    start = float(match["start"])
    value = start if match["end"] is None else 0.5 * (start + float(match["end"]))
    return value, f"{match['prefix'].lower()}<n>{match['suffix'].lower()}"


def time_labels(adata: AnnData, time_key: str) -> TimeLabels:
    """Map ``adata.obs[time_key]`` to numeric times, preserving spacing.

    Numeric columns are used as they are. Categorical or string labels keep the spacing of the
    numbers they contain:

    - numbers: ``"3"`` and ``"10.5"`` are 3 and 10.5;
    - one number between an optional word prefix and suffix: ``"day3"``, ``"D7"``, ``"E8.5"``,
      ``"12h"``, ``"day 14"`` are 3, 7, 8.5, 12 and 14 (a word is letters and underscores);
    - ranges, with or without such words: ``"0-3"``, ``"6 to 9"``, ``"day 0-3"`` are their
      midpoints 1.5, 7.5 and 1.5;
    - :class:`pandas.Interval` categories (from :func:`pandas.cut`) are their midpoints.

    All labels must share the same words (case is ignored): ``"E18.5"`` and ``"P0"`` are
    different units, so such labels are not read as numbers. Labels that do not read as
    numbers are used in the category order of an ordered categorical, spaced one unit apart,
    with a :class:`UserWarning`: equal spacing is rarely what the collection times were.

    Raises
    ------
    KeyError
        If the column is missing.
    ValueError
        On NaN times, distinct labels with the same time, or labels that can be neither parsed
        nor ordered.
    """
    if time_key not in adata.obs:
        raise KeyError(
            f"adata.obs has no column {time_key!r}; available columns: {list(adata.obs.columns)}. "
            "Pass the column holding each cell's collection time as time_key."
        )
    column = adata.obs[time_key]
    if pd.api.types.is_numeric_dtype(column) and not isinstance(column.dtype, pd.CategoricalDtype):
        values = column.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"adata.obs[{time_key!r}] contains NaN or Inf; drop those cells first.")
        return TimeLabels(values=values, mapping={float(v): float(v) for v in np.unique(values)})
    if column.isna().any():
        raise ValueError(f"adata.obs[{time_key!r}] has missing labels; drop those cells first.")
    categorical = column.astype("category") if not isinstance(column.dtype, pd.CategoricalDtype) else column
    categories = [c for c in categorical.cat.categories if (categorical == c).any()]
    parsed = [_label_to_number(c) for c in categories]
    units = {p[1] for p in parsed if p is not None}
    if None not in parsed and len(units) == 1:
        mapping = dict(sorted(zip(categories, (p[0] for p in parsed)), key=lambda item: item[1]))
        if len(set(mapping.values())) != len(mapping):
            raise ValueError(f"Distinct labels of adata.obs[{time_key!r}] map to the same time: {mapping}.")
    elif categorical.cat.ordered:
        order = [c for c in categorical.cat.categories if c in categories]
        mapping = {c: float(i) for i, c in enumerate(order)}
        warnings.warn(
            f"The time labels of adata.obs[{time_key!r}] ({order}) do not read as numbers in one unit: "
            f"treating them as EQUALLY SPACED in category order (times 0 to {len(order) - 1}). If the "
            "collection times are not equally spaced, store them as numbers or as labels such as 'day3'.",
            UserWarning,
            stacklevel=3,
        )
    else:
        mixed = f" The labels mix units ({sorted(units)})." if len(units) > 1 else ""
        raise ValueError(
            f"Cannot order the labels of adata.obs[{time_key!r}] ({categories[:5]}...).{mixed} Make it numeric, "
            "or an ordered categorical: adata.obs[key] = adata.obs[key].astype("
            "pd.CategoricalDtype(categories=[...in time order...], ordered=True))."
        )
    values = categorical.map(mapping).to_numpy(dtype=np.float64)
    return TimeLabels(values=values, mapping=mapping)


def pca(adata: AnnData, n_comps: int = 10, seed: int = 0, inplace: bool = True) -> dict | None:
    """PCA of ``adata.X`` written like scanpy: ``obsm['X_pca']``, ``varm['PCs']``, ``uns['pca']``.

    Also stores the feature means in ``uns['pca']['mean']`` so that trajectories can be
    decoded back to gene space (:func:`trajinfer.tl.decode`). With ``inplace=False`` the
    results are returned as a dict (keys ``obsm``, ``varm``, ``uns``) instead of written.
    """
    from sklearn.decomposition import PCA

    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    n_comps = int(min(n_comps, X.shape[0] - 1, X.shape[1]))
    model = PCA(n_components=n_comps, random_state=seed).fit(X)
    result = {
        "obsm": model.transform(X).astype(np.float32),
        "varm": model.components_.T.astype(np.float32),
        "uns": {"variance": model.explained_variance_, "variance_ratio": model.explained_variance_ratio_, "mean": model.mean_},
    }
    if not inplace:
        return result
    write_pca(adata, result)
    return None


def write_pca(adata: AnnData, result: dict) -> None:
    """Write the output of ``pca(..., inplace=False)`` into ``adata``."""
    adata.obsm["X_pca"] = result["obsm"]
    adata.varm["PCs"] = result["varm"]
    adata.uns["pca"] = result["uns"]


def representation(
    adata: AnnData, use_rep: str | None = None, n_comps: int | None = None
) -> tuple[np.ndarray, str, dict | None]:
    """The matrix the dynamics are fitted in, chosen like scanpy's ``use_rep``.

    ``None`` uses ``obsm['X_pca']`` if present, else ``X`` when it has at most 50 variables,
    else computes a PCA (with a warning) into ``obsm['X_pca']``. ``n_comps`` keeps the first
    columns of the representation.

    ``adata`` may be backed (``anndata.read_h5ad(path, backed="r")``): then only the chosen
    matrix is read, and a PCA of the on-disk ``X`` is refused (it would load ``X`` into memory).

    Returns
    -------
    matrix, key, pending_pca
        A float array (n_obs, d), the name of the representation used, and the PCA that was
        computed for it (to be written with :func:`write_pca` once the caller succeeds; ``None``
        when nothing was computed). ``adata`` itself is never modified here.
    """
    pending = None
    if use_rep is None:
        if "X_pca" in adata.obsm:
            use_rep = "X_pca"
        elif adata.n_vars <= 50:
            use_rep = "X"
        elif adata.isbacked:
            raise ValueError(
                f"adata is backed (opened with backed='r') and has {adata.n_vars} variables but no obsm['X_pca']; "
                "a PCA here would load X into memory. Store a representation in obsm (e.g. a PCA computed out "
                "of core) and pass use_rep, or load the data with adata.to_memory()."
            )
        else:
            warnings.warn(
                f"adata has {adata.n_vars} variables and no obsm['X_pca']; computing a "
                f"{n_comps or 10}-component PCA. Run sc.pp.pca (or pass use_rep) to control this.",
                UserWarning,
                stacklevel=3,
            )
            pending = pca(adata, n_comps=n_comps or 10, inplace=False)
            use_rep = "X_pca"
    if pending is not None:
        matrix = pending["obsm"]
    elif use_rep == "X":
        matrix = _dense(adata.X)
    elif use_rep in adata.obsm:
        matrix = np.asarray(adata.obsm[use_rep])
    else:
        raise KeyError(
            f"Representation {use_rep!r} not found: adata.obsm has {list(adata.obsm.keys())}. "
            "Pass use_rep='X', an existing obsm key, or run sc.pp.pca first."
        )
    matrix = np.asarray(matrix, dtype=np.float64)
    if n_comps is not None:
        if not 1 <= n_comps <= matrix.shape[1]:
            raise ValueError(f"n_comps={n_comps} but {use_rep!r} has {matrix.shape[1]} columns.")
        matrix = matrix[:, :n_comps]
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"The representation {use_rep!r} contains NaN or Inf; clean or impute it first.")
    return matrix, use_rep, pending


def _dense(X: object) -> np.ndarray:
    """``X`` as a dense array: in memory (dense or sparse) or backed on disk (HDF5 dataset)."""
    if hasattr(X, "to_memory"):  # backed sparse dataset
        X = X.to_memory()
    if hasattr(X, "toarray"):
        return X.toarray()
    return np.asarray(X)
