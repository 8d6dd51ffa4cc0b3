"""The one nearest-neighbour search of the tools: exact where cheap, bounded where not."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.neighbors import NearestNeighbors

import trajinfer._neighbors as nb
from trajinfer._neighbors import NeighborIndex, NeighborKernel, knn


def _clusters(n: int, d: int, seed: int) -> np.ndarray:
    """Cells on a few curved branches in ``d`` dimensions with small noise: the shape of real data."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, 1, n)
    branch = rng.integers(0, 4, n)
    directions = rng.normal(size=(4, d))
    bends = rng.normal(size=(4, d))
    return s[:, None] * directions[branch] + np.sin(3 * s)[:, None] * bends[branch] + 0.05 * rng.normal(size=(n, d))


@pytest.mark.parametrize("d", [3, 30])  # a k-d tree, then the blockwise search
def test_exact_search_is_sklearns(d):
    reference, queries = _clusters(3000, d, 0), _clusters(500, d, 1)
    distances, indices = knn(reference, queries, 15)
    expected_d, expected_i = NearestNeighbors(n_neighbors=15).fit(reference).kneighbors(queries)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-9, atol=1e-9)
    assert np.mean(indices == expected_i) > 0.999  # ties aside, the same cells in the same order
    assert np.all(np.diff(distances, axis=1) >= 0)


def test_inverted_file_finds_nearly_the_exact_neighbours(monkeypatch):
    monkeypatch.setattr(nb, "CELLS_PER_LIST", 64)
    reference = _clusters(8000, 40, 2)
    queries = reference[:1000] + 0.02 * np.random.default_rng(3).normal(size=(1000, 40))
    exact_d, exact_i = NeighborIndex(reference, exact=True).query(queries, 20)
    index = NeighborIndex(reference, exact=False)
    distances, indices = index.query(queries, 20)
    assert index._lists is not None  # the approximate search ran
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(indices, exact_i)])
    assert recall > 0.9, recall
    # the neighbours it misses are replaced by cells hardly farther away
    assert np.median(distances[:, -1] / exact_d[:, -1]) < 1.02
    assert np.all(distances >= exact_d - 1e-9)  # never closer than the true k-th neighbour: real distances
    # distances are those of the cells returned
    np.testing.assert_allclose(distances, np.linalg.norm(reference[indices] - queries[:, None, :], axis=2), rtol=1e-9)


def test_the_search_is_chosen_by_its_size(monkeypatch):
    reference = _clusters(2000, 30, 4)
    monkeypatch.setattr(nb, "EXACT_MAX_PAIRS", 2000 * 100)
    index = NeighborIndex(reference)
    index.query(reference[:100], 5)
    assert index._lists is None  # 100 queries: exact
    index.query(reference[:101], 5)
    assert index._lists is not None  # one more: approximate, lists built once
    low = NeighborIndex(_clusters(2000, 5, 4))
    low.query(low.reference, 5)
    assert low._tree is not None and low._lists is None  # few dimensions: the exact k-d tree at any size


def test_edge_cases():
    reference = _clusters(10, 20, 5)
    distances, indices = knn(reference, reference[:0], 3)
    assert distances.shape == indices.shape == (0, 3)
    distances, indices = knn(reference, reference[:4], 50)  # k beyond n: every cell
    assert indices.shape == (4, 10) and np.all(np.sort(indices, axis=1) == np.arange(10))
    with pytest.raises(ValueError, match="non-empty"):
        NeighborIndex(np.zeros((0, 3)))


def test_kernel_weights_are_row_stochastic_and_sparse():
    reference = _clusters(500, 30, 6)
    kernel = NeighborKernel(reference, 10)
    weights = kernel.weights(reference[:50] + 0.01)
    assert sp.issparse(weights) and weights.shape == (50, 500) and weights.nnz == 500
    np.testing.assert_allclose(np.asarray(weights.sum(axis=1)).ravel(), 1.0)
    # the kernel's radius is the median distance to the 10th nearest other cell
    d, _ = NearestNeighbors(n_neighbors=11).fit(reference).kneighbors(reference)
    assert kernel.radius == pytest.approx(np.median(d[:, -1]))


def test_single_precision_cells_are_not_copied_to_double():
    reference = _clusters(2000, 30, 7).astype(np.float32)
    index = NeighborIndex(reference)
    assert index.reference.dtype == np.float32 and index._single is index.reference
    distances, indices = index.query(reference[:100].astype(np.float64) + 0.01, 10)
    expected_d, expected_i = NearestNeighbors(n_neighbors=10).fit(reference.astype(np.float64)).kneighbors(reference[:100] + 0.01)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-6)
    assert np.mean(indices == expected_i) > 0.99
