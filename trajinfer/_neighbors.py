"""Nearest observed cells: one search for every tool, Gaussian kNN weights, and where an embedding is stored.

Shared by the AnnData tools (:mod:`trajinfer.tl`) and the plots (:mod:`trajinfer.pl`): both map
positions and velocities from the fitted representation onto an embedding such as UMAP by kNN
kernel regression, and read fates and support off the nearest observed cells.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

__all__ = ["NeighborIndex", "NeighborKernel", "basis_key", "knn", "project_velocity"]

#: Cells on which the neighbourhood radius is measured: enough for a stable median, and a bounded cost.
SCALE_SAMPLE = 2000
#: Up to this many dimensions a k-d tree prunes well and searches exactly in about log n per query.
TREE_MAX_DIM = 12
#: Exact (brute-force) search while queries × reference cells stay below this: a few seconds of
#: matrix products on one core. Beyond it the search is approximate (:class:`NeighborIndex`).
EXACT_MAX_PAIRS = 200_000_000
#: Cells per list of the approximate search: lists small enough that probing a few of them is cheap.
CELLS_PER_LIST = 256
#: Lists searched per query: its own and the nearest others around it.
N_PROBE = 12
#: Query rows per block of the exact search: bounds the distance block to about 100 MB.
BLOCK_ENTRIES = 12_000_000


class NeighborIndex:
    """The ``k`` nearest reference cells of any number of queries, in bounded time and memory.

    The search is exact where it is cheap: a k-d tree in up to ``TREE_MAX_DIM`` dimensions, a
    blockwise brute-force search while queries × reference cells stay below ``EXACT_MAX_PAIRS``.
    Above that (hundreds of thousands of cells in tens of dimensions, where a k-d tree visits
    almost every cell and a brute-force search is quadratic) it is an inverted-file search:
    the reference cells are grouped into lists of about ``CELLS_PER_LIST`` by k-means
    (:class:`sklearn.cluster.MiniBatchKMeans`), and each query is compared with the cells of the
    ``N_PROBE`` lists whose centres lie nearest to its own list's centre, in blocks, with no
    queries × reference matrix. Its cost grows linearly in the number of queries.

    Parameters
    ----------
    reference
        The observed cells, shape (n, d).
    exact
        ``True`` to always search exactly, ``False`` to always use the inverted file (above
        one list), ``None`` (default) to choose by the size of the search as above.
    seed
        Seed of the k-means grouping.
    """

    def __init__(self, reference: np.ndarray, *, exact: bool | None = None, seed: int = 0) -> None:
        # single-precision cells stay single (an atlas's X_pca): no double copy of a million cells
        single = np.asarray(reference).dtype == np.float32
        self.reference = np.ascontiguousarray(reference, dtype=np.float32 if single else np.float64)
        if self.reference.ndim != 2 or len(self.reference) == 0:
            raise ValueError(f"The reference cells must be a non-empty (n, d) array; got shape {np.shape(reference)}.")
        self.exact, self.seed = exact, seed
        self._tree = None
        self._lists: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._single = self.reference if single else self.reference.astype(np.float32)
        self._norms = np.einsum("ij,ij->i", self._single, self._single)

    @property
    def n(self) -> int:
        """Number of reference cells."""
        return len(self.reference)

    def query(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices of the ``k`` nearest reference cells of each query, nearest first.

        Parameters
        ----------
        queries
            Positions, shape (m, d).
        k
            Neighbours per query (at most the number of reference cells).

        Returns
        -------
        distances, indices
            Both of shape (m, k); Euclidean distances in the units of the reference.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float64)
        k = int(min(k, self.n))
        if len(queries) == 0:
            return np.zeros((0, k)), np.zeros((0, k), dtype=np.int64)
        if self._searches_exactly(len(queries)):
            if self.reference.shape[1] <= TREE_MAX_DIM:
                return self._tree_query(queries, k)
            return self._brute(queries, k, np.arange(self.n))
        return self._inverted_file(queries, k)

    def _searches_exactly(self, m: int) -> bool:
        if self.exact is not None:
            return self.exact or self.n <= CELLS_PER_LIST
        return self.reference.shape[1] <= TREE_MAX_DIM or m * self.n <= EXACT_MAX_PAIRS

    def _tree_query(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from scipy.spatial import cKDTree
        if self._tree is None:
            self._tree = cKDTree(self.reference)
        distances, indices = self._tree.query(queries, k=k)
        return distances.reshape(len(queries), k), indices.reshape(len(queries), k).astype(np.int64)

    def _brute(self, queries: np.ndarray, k: int, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact kNN of ``queries`` among the reference rows ``candidates``, in blocks of rows.

        Candidates are ranked by single-precision squared distances (one matrix product and a
        top-k per block); the distances of the ``k`` chosen are then computed in double precision.
        """
        indices = candidates[_nearest_rows(queries, self._single[candidates], min(k, len(candidates)), self._norms[candidates])]
        distances = _distances(queries, self.reference, indices)
        order = np.argsort(distances, axis=1, kind="stable")
        return np.take_along_axis(distances, order, axis=1), np.take_along_axis(indices, order, axis=1)

    def _build_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from sklearn.cluster import MiniBatchKMeans
        n_lists = max(2, self.n // CELLS_PER_LIST)
        rng = np.random.default_rng(self.seed)
        sample = self.reference[rng.permutation(self.n)[: min(self.n, 40 * n_lists)]]
        kmeans = MiniBatchKMeans(n_clusters=n_lists, init="random", batch_size=8192, n_init=1, max_iter=10, random_state=self.seed)
        centres = kmeans.fit(sample).cluster_centers_
        labels = _nearest_rows(self.reference, centres, 1)[:, 0]
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n_lists + 1))
        probes = _nearest_rows(centres, centres, min(N_PROBE, n_lists))
        return centres, order, bounds, probes

    def _inverted_file(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._lists is None:
            self._lists = self._build_lists()
        centres, order, bounds, probes = self._lists
        home = _nearest_rows(queries, centres, 1)[:, 0]
        distances, indices = np.empty((len(queries), k)), np.empty((len(queries), k), dtype=np.int64)
        by_home = np.argsort(home, kind="stable")
        starts = np.searchsorted(home[by_home], np.arange(len(centres) + 1))
        for list_id in np.flatnonzero(np.diff(starts)):
            rows = by_home[starts[list_id]:starts[list_id + 1]]
            candidates = np.concatenate([order[bounds[p]:bounds[p + 1]] for p in probes[list_id]])
            if len(candidates) < k:  # lists emptied by k-means: fall back to every cell
                candidates = np.arange(self.n)
            distances[rows], indices[rows] = self._brute(queries[rows], k, candidates)
        return distances, indices


def _nearest_rows(points: np.ndarray, rows: np.ndarray, k: int, norms: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` rows nearest to each point, shape (len(points), k), in no set order.

    Ranked by single-precision squared distances, one matrix product and one top-k per block
    of at most ``BLOCK_ENTRIES`` point × row entries. ``norms``: the rows' squared norms, when
    already known.
    """
    cells = torch.from_numpy(np.asarray(rows, dtype=np.float32))
    squares = (cells * cells).sum(dim=1) if norms is None else torch.from_numpy(np.asarray(norms, dtype=np.float32))
    block = max(1, BLOCK_ENTRIES // max(len(cells), 1))
    out = np.empty((len(points), k), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(points), block):
            p = torch.from_numpy(np.asarray(points[start:start + block], dtype=np.float32))
            squared = torch.addmm(squares[None, :], p, cells.T, alpha=-2.0)  # |x|² − 2p·x: |p|² does not change the order
            out[start:start + block] = torch.topk(squared, k, dim=1, largest=False).indices.numpy()
    return out


def _distances(queries: np.ndarray, reference: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Euclidean distances from each query to the reference rows ``indices`` of its row, in blocks."""
    out = np.empty(indices.shape)
    cells, points, rows = torch.from_numpy(reference), torch.from_numpy(queries), torch.from_numpy(indices)
    block = max(1, BLOCK_ENTRIES // max(indices.shape[1] * queries.shape[1], 1))
    for start in range(0, len(queries), block):
        chosen = rows[start:start + block]
        diff = cells.index_select(0, chosen.reshape(-1)).double().reshape(*chosen.shape, -1) - points[start:start + block, None, :]
        out[start:start + block] = torch.linalg.vector_norm(diff, dim=2).numpy()
    return out


def knn(reference: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of the ``k`` nearest ``reference`` rows of each query (see :class:`NeighborIndex`)."""
    return NeighborIndex(reference).query(queries, k)


class NeighborKernel:
    """Gaussian weights of the nearest observed cells, and the scales they set.

    Parameters
    ----------
    reference
        The observed cells, shape (n, d), or their :class:`NeighborIndex`.
    n_neighbors
        Neighbours weighted per query (at most ``n``).

    Attributes
    ----------
    radius
        Median distance from a cell to its ``n_neighbors``-th nearest other cell, in the units
        of ``reference`` (measured on at most 2,000 cells).
    bandwidth
        Default kernel width, ``radius / 2``.
    spacing
        Median distance from a cell to its nearest other cell (on the same cells): the typical
        gap between observed cells, against which off-support positions are measured.
    """

    def __init__(self, reference: np.ndarray | NeighborIndex, n_neighbors: int) -> None:
        if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {n_neighbors!r}.")
        self.index = reference if isinstance(reference, NeighborIndex) else NeighborIndex(reference)
        n = self.index.n
        self.k = int(min(n_neighbors, n))
        sample = self.index.reference[np.random.default_rng(0).permutation(n)[:SCALE_SAMPLE]]
        distances, _ = self.index.query(sample, min(self.k + 1, n))
        self.radius = max(float(np.median(distances[:, -1])), float(np.finfo(np.float32).eps))
        self.bandwidth = 0.5 * self.radius
        self.spacing = float(np.median(distances[:, min(1, distances.shape[1] - 1)]))

    def weights(self, queries: np.ndarray, bandwidth: float | np.ndarray | None = None) -> sp.csr_matrix:
        """Row-stochastic weights of the ``k`` nearest reference cells of each query.

        Parameters
        ----------
        queries
            Positions, shape (n_queries, d).
        bandwidth
            Kernel width ``h``, one for all queries or one per query (default :attr:`bandwidth`).

        Returns
        -------
        scipy.sparse.csr_matrix
            Shape (n_queries, n_reference), entries ``∝ exp(-|q - x_j|² / 2h²)``, rows summing to one.
        """
        return self.weights_of(*self.index.query(queries, self.k), bandwidth)

    def weights_of(self, distances: np.ndarray, indices: np.ndarray, bandwidth: float | np.ndarray | None = None) -> sp.csr_matrix:
        """:meth:`weights` from a search already made: ``self.index.query(queries, self.k)``."""
        n = len(distances)
        width = self.bandwidth if bandwidth is None else bandwidth
        h2 = np.broadcast_to(np.asarray(width, dtype=np.float64) ** 2, (n,))[:, None]
        weights = np.exp(-(distances**2 - distances[:, :1] ** 2) / (2.0 * h2))  # nearest weighs 1: no underflow
        weights /= weights.sum(axis=1, keepdims=True)
        return sp.csr_matrix((weights.ravel(), indices.ravel(), np.arange(0, n * self.k + 1, self.k)), shape=(n, self.index.n))

    def default_dt(self, V: np.ndarray) -> float:
        """Time over which the median cell moves by :attr:`radius` at velocity ``V`` (n, d)."""
        speed = float(np.median(np.linalg.norm(V, axis=1)))
        if not speed > 0:
            raise ValueError("The velocities are all zero: pass dt explicitly.")
        return self.radius / speed


def project_velocity(
    kernel: NeighborKernel, embedding: np.ndarray, X: np.ndarray, V: np.ndarray, dt: float | None = None
) -> np.ndarray:
    """Velocities ``V`` at ``X`` (in the kernel's space) as velocities in ``embedding``.

    ``(f(X + dt·V) - f(X)) / dt`` with ``f`` the Gaussian kNN regression of the embedding
    coordinates (:meth:`NeighborKernel.weights` ``@ embedding``).

    Parameters
    ----------
    kernel
        Neighbours among the cells of ``embedding``, in the space of ``X``.
    embedding
        Embedding coordinates of the kernel's reference cells, shape (n_reference, e).
    X, V
        Positions and velocities, shape (n, d).
    dt
        Time step in the time units of ``V`` (default :meth:`NeighborKernel.default_dt`).

    Returns
    -------
    numpy.ndarray
        Shape (n, e).
    """
    dt = kernel.default_dt(V) if dt is None else float(dt)
    return np.asarray((kernel.weights(X + dt * V) - kernel.weights(X)) @ embedding) / dt


def basis_key(adata: AnnData, basis: str) -> str:
    """``"X"`` or the ``obsm`` key of ``basis``, given as a key (``"X_umap"``) or a scanpy name (``"umap"``).

    Raises
    ------
    KeyError
        If ``adata.obsm`` holds neither name.
    """
    if basis == "X":
        return basis
    for name in (basis, f"X_{basis}"):
        if name in adata.obsm:
            return name
    raise KeyError(f"Basis {basis!r} not found: adata.obsm has {list(adata.obsm.keys())}; pass basis='X' or an obsm key.")
