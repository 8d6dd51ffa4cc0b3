"""Gaussian k-nearest-neighbour weights between cells, and where an embedding is stored.

Shared by the AnnData tools (:mod:`trajinfer.tl`) and the plots (:mod:`trajinfer.pl`): both map
positions and velocities from the fitted representation onto an embedding such as UMAP by kNN
kernel regression.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData
from scipy.spatial import cKDTree

__all__ = ["NeighborKernel", "basis_key", "project_velocity"]

#: Cells on which the neighbourhood radius is measured: enough for a stable median, and a bounded cost.
SCALE_SAMPLE = 2000


class NeighborKernel:
    """Gaussian weights of the nearest observed cells, and the scales they set.

    Parameters
    ----------
    reference
        The observed cells, shape (n, d).
    n_neighbors
        Neighbours weighted per query (at most ``n``).

    Attributes
    ----------
    radius
        Median distance from a cell to its ``n_neighbors``-th nearest other cell, in the units
        of ``reference`` (measured on at most 2,000 cells).
    bandwidth
        Default kernel width, ``radius / 2``.
    """

    def __init__(self, reference: np.ndarray, n_neighbors: int) -> None:
        if n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {n_neighbors!r}.")
        self.tree = cKDTree(reference)
        self.k = int(min(n_neighbors, len(reference)))
        sample = reference[np.random.default_rng(0).permutation(len(reference))[:SCALE_SAMPLE]]
        distances, _ = self.tree.query(sample, k=min(self.k + 1, len(reference)))
        self.radius = max(float(np.median(distances[:, -1])), float(np.finfo(np.float32).eps))
        self.bandwidth = 0.5 * self.radius

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
        n = len(queries)
        distances, indices = self.tree.query(queries, k=self.k)
        distances, indices = distances.reshape(n, self.k), indices.reshape(n, self.k)
        width = self.bandwidth if bandwidth is None else bandwidth
        h2 = np.broadcast_to(np.asarray(width, dtype=np.float64) ** 2, (n,))[:, None]
        weights = np.exp(-(distances**2 - distances[:, :1] ** 2) / (2.0 * h2))  # nearest weighs 1: no underflow
        weights /= weights.sum(axis=1, keepdims=True)
        return sp.csr_matrix((weights.ravel(), indices.ravel(), np.arange(0, n * self.k + 1, self.k)), shape=(n, len(self.tree.data)))

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
