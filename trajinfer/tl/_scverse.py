"""The learned dynamics where scverse tools look for them.

Velocities under scvelo's names (``obsm['velocity_<basis>']``, ``layers['velocity']``), their
projection onto 2-D embeddings, a cell-cell transition matrix in ``obsp`` and a CellRank
kernel on it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from .._docs import doc_params
from .._neighbors import NeighborKernel, basis_key, project_velocity
from .._progress import BAR_MIN_CELLS, progress_bar
from ..estimator import ActionMatching
from ..losses import is_entropic
from ..pp import representation, time_labels
from ._record import find_record, fit_record
from ._utils import batched

if TYPE_CHECKING:
    from cellrank.kernels import PrecomputedKernel

__all__ = [
    "cellrank_kernel", "embed", "transition_matrix", "velocity_embedding", "velocity_entries", "write_velocity_entries",
]

logger = logging.getLogger(__name__)

VKEY = "velocity"
LAYER_LIMIT = 2**27  # entries of a dense layer written without being asked (512 MiB of float32)


@doc_params()
def embed(
    adata: AnnData,
    X_rep: np.ndarray,
    *,
    basis: str = "X_umap",
    use_rep: str | None = None,
    key: str = "tj",
    n_neighbors: int = 30,
    reach: float | None = None,
) -> np.ndarray:
    """Map positions in the fitted representation onto an embedding such as UMAP.

    Each position gets the mean embedding coordinates of its ``n_neighbors`` nearest observed
    cells in the representation, weighted by a Gaussian kernel of width half the
    neighbourhood radius, the median distance from a cell to its ``n_neighbors``-th neighbour
    (kNN kernel regression). An embedding has no place for positions away from the data: one
    between two branches maps between their embeddings, wherever that is; ``reach`` leaves
    such positions out.

    Parameters
    ----------
    adata
        The cells, with the representation and the embedding in ``obsm``.
    X_rep
        Positions of shape (..., d), e.g. ``traj.X`` (T, n, d); the first ``d`` columns of the
        representation are used.
    basis
        The embedding: an ``obsm`` key (``"X_umap"``) or a scanpy basis name (``"umap"``).
    use_rep
        The representation of ``X_rep`` (default: the one recorded by :func:`trajinfer.fit`
        in ``uns[key]``, else chosen as :func:`trajinfer.pp.representation` does).
    {key_uns}
    n_neighbors
        Cells averaged per position.
    reach
        Positions farther than ``reach`` neighbourhood radii from every observed cell map to
        NaN (default: all positions are mapped).

    Returns
    -------
    numpy.ndarray
        Shape (..., embedding dimensions).
    """
    positions = np.asarray(X_rep, dtype=np.float64)
    flat_positions = positions.reshape(-1, positions.shape[-1])
    kernel = NeighborKernel(_representation_of(adata, use_rep, key, positions.shape[-1]), n_neighbors)
    target = _obsm(adata, basis)
    flat = np.asarray(kernel.weights(flat_positions) @ target)
    if reach is not None:
        flat[kernel.index.query(flat_positions, 1)[0][:, 0] > reach * kernel.radius] = np.nan
    return flat.reshape(positions.shape[:-1] + (target.shape[1],))


def velocity_embedding(
    adata: AnnData,
    *,
    basis: str | Sequence[str] | None = None,
    key: str = "tj",
    layer: bool | None = None,
    n_neighbors: int = 30,
    dt: float | None = None,
) -> list[str]:
    """Write the velocities of a :func:`trajinfer.fit` where scvelo and CellRank read them.

    :func:`trajinfer.fit` calls this; call it again after computing a new embedding (e.g.
    ``sc.tl.umap``). The velocities are ``obsm[f"{key}_velocity"]`` (each cell's velocity at
    its own time, in the fitted representation).

    Parameters
    ----------
    adata
        Data annotated by :func:`trajinfer.fit`.
    basis
        Embeddings to project onto (``obsm`` keys or scanpy names). Default: every
        two-column ``obsm['X_<name>']`` other than the representation.
    key
        ``key_added`` of the fit.
    layer
        Write the gene-space layer: ``True``, ``False``, or ``None`` (default) to write it
        unless ``adata`` is backed or the layer would exceed 2²⁷ entries (512 MiB of float32).
    n_neighbors, dt
        Neighbours and time step of the embedding projection (see Notes).

    Returns
    -------
    list of str
        What was written, as ``"obsm/velocity_umap"``, ``"layers/velocity"``, ...

    Notes
    -----
    - ``obsm['velocity_<rep>']`` for a representation ``obsm['X_<rep>']`` (e.g.
      ``velocity_pca``): the velocities themselves.
    - ``obsm['velocity_<name>']`` for each embedding ``obsm['X_<name>']``: the displacement of
      the embedding coordinates predicted by kNN kernel regression (:func:`embed`) along the
      velocity, ``(f(x + dt·v) - f(x)) / dt``. This is the expected embedding displacement of a
      cell under the Gaussian transition kernel of :func:`transition_matrix` (drift only), minus
      that of the unmoved cell, per time unit. ``dt`` defaults to the time over which the median
      cell moves by one neighbourhood radius (the median distance to the ``n_neighbors``-th
      nearest cell).
    - ``layers['velocity']``: for a PCA representation with ``varm['PCs']``, the gene-space
      velocity ``V @ PCs[:, :d]ᵀ`` (and ``var['velocity_genes']``, the genes with a non-zero
      loading, which scvelo and CellRank restrict to); for ``use_rep="X"``, ``V`` itself.
    - ``uns['velocity_params']`` records this, so that scvelo's plots use these projections
      instead of recomputing them from a velocity graph.

    ``scv.pl.velocity_embedding_stream(adata, basis="umap")`` and
    ``cellrank.kernels.VelocityKernel(adata, attr="obsm", xkey="X_pca", vkey="velocity_pca")``
    (or the default ``layers`` after ``scv.pp.moments``) then work as after ``scv.tl.velocity``.
    Entries of these names that trajinfer did not write are replaced with a warning.
    """
    record = find_record(adata, key=key)
    if record is None or f"{key}_velocity" not in adata.obsm:
        raise KeyError(f"adata has no fit under {key!r} (uns[{key!r}], obsm['{key}_velocity']); run tj.fit first.")
    V = np.asarray(adata.obsm[f"{key}_velocity"], dtype=np.float64)
    entries = velocity_entries(
        adata, record.representation(adata), V, record.use_rep, basis=basis, layer=layer, n_neighbors=n_neighbors, dt=dt
    )
    return write_velocity_entries(adata, entries)


def velocity_entries(
    adata: AnnData,
    X: np.ndarray,
    V: np.ndarray,
    rep_key: str,
    *,
    basis: str | Sequence[str] | None = None,
    layer: bool | None = None,
    n_neighbors: int = 30,
    dt: float | None = None,
) -> dict[str, Any]:
    """What :func:`velocity_embedding` writes, computed without touching ``adata``."""
    obsm: dict[str, np.ndarray] = {}
    if rep_key.startswith("X_"):
        obsm[f"{VKEY}_{rep_key[2:]}"] = V.astype(np.float32)
    if basis is None:
        bases = [k for k in adata.obsm if k.startswith("X_") and k != rep_key and np.shape(adata.obsm[k])[1:] == (2,)]
    else:
        bases = [basis_key(adata, b) for b in ([basis] if isinstance(basis, str) else basis)]
    bases = [b for b in bases if b != rep_key]
    if bases:
        kernel = NeighborKernel(X, n_neighbors)
        step = kernel.default_dt(V) if dt is None else float(dt)
        for name in bases:
            obsm[f"{VKEY}_{name.removeprefix('X_')}"] = project_velocity(kernel, _obsm(adata, name), X, V, step).astype(np.float32)
    layers, var = {}, {}
    gene_space = rep_key == "X" or (rep_key == "X_pca" and "PCs" in adata.varm)
    size = adata.n_obs * adata.n_vars
    if layer is None:
        layer = gene_space and not adata.isbacked and size <= LAYER_LIMIT
        if gene_space and not layer:
            logger.info("layers['velocity'] not written (backed data or %d entries); pass layer=True to write it.", size)
    if layer:
        if not gene_space:
            raise ValueError(f"A gene-space velocity layer needs use_rep='X' or 'X_pca' with varm['PCs'], not {rep_key!r}.")
        if rep_key == "X":
            layers[VKEY] = V.astype(np.float32)
        else:
            loadings = np.asarray(adata.varm["PCs"], dtype=np.float32)[:, : V.shape[1]]
            layers[VKEY] = _gene_velocity(V, loadings)
            var[f"{VKEY}_genes"] = np.any(loadings != 0, axis=1)
    return {"obsm": obsm, "layers": layers, "var": var, "embeddings": [k.removeprefix(f"{VKEY}_") for k in obsm]}


def _gene_velocity(V: np.ndarray, loadings: np.ndarray) -> np.ndarray:
    """``V @ loadings.T`` in single precision, written in blocks of rows: no double-precision
    copy of the (cells × genes) layer."""
    out = np.empty((len(V), len(loadings)), dtype=np.float32)
    block = max(1, 2**24 // max(len(loadings), 1))
    for start in range(0, len(V), block):
        np.matmul(V[start:start + block].astype(np.float32), loadings.T, out=out[start:start + block])
    return out


def write_velocity_entries(adata: AnnData, entries: dict[str, Any]) -> list[str]:
    """Write the output of :func:`velocity_entries`, warning about entries trajinfer did not write."""
    params = dict(adata.uns.get(f"{VKEY}_params", {}))
    ours = set(params.get("written", [])) if params.get("mode") == "trajinfer" else set()
    written = [f"{slot}/{name}" for slot in ("obsm", "layers", "var") for name in entries[slot]]
    existing = {"obsm": adata.obsm, "layers": adata.layers, "var": adata.var}
    replaced = [w for w in written if w.split("/", 1)[1] in existing[w.split("/", 1)[0]] and w not in ours]
    if replaced:
        warnings.warn(f"Replacing {replaced} (not written by trajinfer) with trajinfer's velocities.", UserWarning, stacklevel=3)
    for name, value in entries["obsm"].items():
        adata.obsm[name] = value
    for name, value in entries["layers"].items():
        adata.layers[name] = value
    for name, value in entries["var"].items():
        adata.var[name] = value
    embeddings = [*params.get("embeddings", []), *entries["embeddings"]] if ours else entries["embeddings"]
    adata.uns[f"{VKEY}_params"] = {"mode": "trajinfer", "embeddings": list(dict.fromkeys(embeddings)), "written": sorted(ours.union(written))}
    return written


@doc_params()
def transition_matrix(
    adata: AnnData,
    model: ActionMatching,
    *,
    n_neighbors: int = 30,
    dt: float | None = None,
    bandwidth: float | None = None,
    n_steps: int = 5,
    key_added: str | None = None,
) -> sp.csr_matrix:
    """Cell-cell transition probabilities over a short time from the learned dynamics.

    Every cell is pushed from its own time for ``dt`` along the learned drift (``n_steps``
    Euler steps; past the end of the fitted range the field at the last time is used). Its
    row then weights the ``n_neighbors`` observed cells nearest to the pushed position with a
    Gaussian kernel, ``exp(-|y_i - x_j|² / 2h_i²)``, normalised to sum to one. For the
    entropic methods ``h_i² = bandwidth² + σ(t_i)²·dt``: the Gaussian transition density of the
    SDE over ``dt`` (Euler–Maruyama) smoothed by the kernel; for the deterministic ones
    ``h_i = bandwidth``. Growth (unbalanced methods) is not included: rows are probabilities.

    Parameters
    ----------
    {adata_model}
    n_neighbors
        Non-zero entries per row.
    dt
        Time step in the data's time units. Default: the time over which the median cell moves
        by the median distance to its ``n_neighbors``-th nearest cell.
    bandwidth
        Kernel width ``h`` in representation units (default: half that distance).
    n_steps
        Euler steps of the push.
    key_added
        Writes the matrix to ``obsp[f"{key_added}_transitions"]`` and the settings (``dt``,
        ``bandwidth``, ``n_neighbors``, ``n_steps``) to ``uns[key_added]["transitions"]``
        (default: the fit's ``key_added``: ``obsp["tj_transitions"]``).

    Returns
    -------
    scipy.sparse.csr_matrix
        Row-stochastic (n_obs, n_obs), row ``i`` the distribution of cell ``i``'s position
        ``dt`` later over the observed cells. :func:`cellrank_kernel` wraps it for CellRank.
    """
    record = fit_record(model)
    key = record.key_added if key_added is None else key_added
    X = record.representation(adata)
    times = time_labels(adata, record.time_key).values
    kernel = NeighborKernel(X, n_neighbors)
    step = kernel.default_dt(batched(model.velocity, X, times)) if dt is None else float(dt)
    h = kernel.bandwidth if bandwidth is None else float(bandwidth)
    lo, hi = model.t_range_
    Y, h_step = X.copy(), step / n_steps
    for k in progress_bar(range(n_steps), desc="transition matrix", show=len(X) >= BAR_MIN_CELLS, leave=False):
        Y = Y + h_step * batched(model.velocity, Y, np.clip(times + k * h_step, lo, hi))
    width = np.full(len(X), h)
    if is_entropic(model.method):
        sigma = np.asarray(model.sigma(torch.as_tensor(times)) if callable(model.sigma) else model.sigma, dtype=np.float64)
        width = np.sqrt(h**2 + sigma**2 * step)
    matrix = kernel.weights(Y, width)
    adata.obsp[f"{key}_transitions"] = matrix
    adata.uns.setdefault(key, {})["transitions"] = {"dt": step, "bandwidth": h, "n_neighbors": kernel.k, "n_steps": int(n_steps)}
    return matrix


def cellrank_kernel(adata: AnnData, model: ActionMatching | None = None, *, key: str = "tj", **params: Any) -> PrecomputedKernel:
    """A CellRank kernel on trajinfer's transition matrix, for CellRank's estimators.

    Needs CellRank (see :ref:`install-scverse`).

    Parameters
    ----------
    adata
        The data.
    model
        A model from :func:`trajinfer.fit`: the matrix is (re)computed with
        :func:`transition_matrix` (``params`` are passed on). Without it, the matrix in
        ``obsp[f"{key}_transitions"]`` is used.
    key
        Key of the transition matrix.

    Returns
    -------
    cellrank.kernels.PrecomputedKernel
        A forward kernel; e.g. ``cellrank.estimators.GPCCA(kernel)`` finds macrostates, the
        terminal states (the tips of the dynamics) and fate probabilities of trajinfer's
        dynamics. Without PETSc/SLEPc compute its Schur decomposition with
        ``compute_schur(n_components=..., method="brandts")`` (SciPy).
    """
    try:
        from cellrank.kernels import PrecomputedKernel
    except ImportError as error:
        raise ImportError("cellrank_kernel needs CellRank (see the installation page, scvelo and CellRank).") from error
    obsp_key = f"{key}_transitions"
    if model is not None:
        transition_matrix(adata, model, key_added=key, **params)
    elif obsp_key not in adata.obsp:
        raise KeyError(f"adata.obsp has no {obsp_key!r}: run tj.tl.transition_matrix(adata, model) or pass model=.")
    return PrecomputedKernel(obsp_key, adata=adata, backward=False)


def _representation_of(adata: AnnData, use_rep: str | None, key: str, n_comps: int) -> np.ndarray:
    """The first ``n_comps`` columns of the representation recorded under ``uns[key]`` (or ``use_rep``)."""
    if use_rep is None:
        record = find_record(adata, key=key)
        use_rep = None if record is None else record.use_rep
    X, _, pending = representation(adata, use_rep, n_comps)
    if pending is not None:
        raise KeyError("adata has no obsm['X_pca']: pass use_rep= with the representation of the positions.")
    return X


def _obsm(adata: AnnData, basis: str) -> np.ndarray:
    """The embedding ``basis`` (an ``obsm`` key or scanpy name) as a float array."""
    name = basis_key(adata, basis)
    if name == "X":
        raise ValueError("basis must be an embedding in adata.obsm, not 'X'.")
    return np.asarray(adata.obsm[name], dtype=np.float64)
