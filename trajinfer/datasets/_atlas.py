"""Synthetic atlas-sized time course with a known branching, growing ground truth."""

from __future__ import annotations

import numbers

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["ATLAS_BRANCHES", "ATLAS_FATES", "fate_posterior", "synthetic_atlas"]

#: Lineage ends (``obs["fate"]``); ``"B2"`` is the growing branch.
ATLAS_FATES = ("A", "B1", "B2")
#: Segments of the tree a cell can sit on (``obs["branch"]``).
ATLAS_BRANCHES = ("trunk", "A", "B", "B1", "B2")

_LATENT = 4  # latent state: progress, first split, second split, a shared oscillation
_SIGNAL = 8  # leading principal components that carry the latent state
_SPLITS = (0.3, 0.6)  # first (trunk -> A | B) and second (B -> B1 | B2) branching, in fractions of the time course
_PRIOR = np.array([0.4, 0.3, 0.3])  # fate shares before any growth
_GROWTH_FOLD = 4.0  # B2 grows this many times over between its birth and the last time point
_SPEED = 2.5  # progress along the trunk over the whole time course
_SPREAD = 2.5  # distance between sister branches at the last time point
_WAVE = 0.4  # amplitude of the shared oscillation
_NOISE = 0.15  # standard deviation of a cell around its lineage's mean path (latent units)
_PRIMING = 0.15  # fate bias of a lineage from the start: offset of its path along each split's axis
_MIN_PER_TIME = 2
_CHUNK = 65_536  # cells generated at once


def synthetic_atlas(n_cells: int, *, n_times: int = 20, n_pcs: int = 50, n_genes: int = 200, seed: int = 0) -> ad.AnnData:
    """A branching, proliferating time course of any size, with its ground truth.

    A latent state of four dimensions follows one of three lineages: a trunk that splits at
    three tenths of the time course into ``A`` and ``B``, ``B`` splitting again at six tenths
    into ``B1`` and ``B2``; every lineage shares an oscillation (a cell-cycle-like wave). Cells of ``B2``
    proliferate: that lineage's mass grows fourfold from its birth to the last time point, so
    it holds more and more of the cells. Lineages are primed: from the first time point each
    one's mean path is offset towards its future branch by the noise's standard deviation, so
    an early cell's fate is predictable but uncertain (the Bayes-optimal fate probabilities are
    :func:`fate_posterior`). Each cell sits at its lineage's mean path plus a fixed Gaussian
    offset, so its true velocity is the derivative of that mean path.

    The latent state is embedded nonlinearly (a linear map plus a ``tanh`` of another) in the
    first 8 of ``n_pcs`` principal components; the others carry noise of decreasing variance.
    The genes are a linear decoding of the components: ``X = X_pca @ PCs.T + mean`` with
    orthonormal loadings, so that ``X_pca`` is exactly the projection of the centred ``X``
    on ``varm["PCs"]`` (and :func:`trajinfer.tl.decode` maps positions back to genes).

    Time point ``k`` has a number of cells proportional to the population's mass then, times a
    random factor (log-normal, σ = 0.35): the time points hold unequal numbers of cells, more
    late than early. Generation is vectorised in float32, in chunks of 65,536 cells: 10⁶ cells
    take about 8 s on one busy CPU core and a peak of 1.7 GB, of which the returned arrays are
    1.3 GB (``X`` 0.8 GB; ``X_pca`` and the true velocities 0.2 GB each).

    Parameters
    ----------
    n_cells
        Total number of cells; at least ``2 * n_times``.
    n_times
        Number of time points (labels 0, 1, ..., ``n_times - 1``); at least 5.
    n_pcs
        Dimensions of ``obsm["X_pca"]``; at least 8.
    n_genes
        Genes in ``X``; at least ``n_pcs``.
    seed
        Seed of the random generator; the same seed gives the same data.

    Returns
    -------
    anndata.AnnData
        ``X`` (float32, cells × genes); ``obs["time"]`` (float label); ``obs["fate"]``
        (categorical ``A``/``B1``/``B2``: the branch the cell's lineage ends in);
        ``obs["branch"]`` (categorical ``trunk``/``A``/``B``/``B1``/``B2``: where the cell sits
        at its time); ``obsm["X_pca"]`` (float32, ``n_pcs``); ``obsm["velocity_true"]``
        (float32, ``n_pcs``: the true velocity in ``X_pca`` per time unit); ``obsm["latent"]``
        (float32, 4); ``varm["PCs"]``; ``uns["pca"]["mean"]``; the generation parameters and
        the cells per time point in ``uns["atlas"]``.
    """
    _check_int(n_times, "n_times", 5)
    _check_int(n_cells, "n_cells", _MIN_PER_TIME * n_times)
    _check_int(n_pcs, "n_pcs", _SIGNAL)
    _check_int(n_genes, "n_genes", n_pcs)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}.")
    rng = np.random.default_rng(seed)
    s_grid = np.linspace(0.0, 1.0, n_times)

    # cells per time point: the population's mass times a random factor
    shares = _fate_mass(s_grid)  # (n_times, 3)
    weight = shares.sum(axis=1) * rng.lognormal(0.0, 0.35, n_times)
    counts = _MIN_PER_TIME + _allocate(n_cells - _MIN_PER_TIME * n_times, weight / weight.sum())
    # fates: multinomial draws with each time point's shares
    fate_counts = np.stack([rng.multinomial(c, p / p.sum()) for c, p in zip(counts, shares)])
    time_index = np.repeat(np.arange(n_times), counts)
    fate = np.repeat(np.tile(np.arange(3), n_times), fate_counts.ravel())
    order = rng.permutation(n_cells)
    time_index, fate = time_index[order], fate[order]
    s = s_grid[time_index].astype(np.float32)

    A = rng.standard_normal((_LATENT, _SIGNAL)).astype(np.float32) / np.sqrt(_LATENT, dtype=np.float32)
    B = rng.standard_normal((_LATENT, _SIGNAL)).astype(np.float32) / np.sqrt(_LATENT, dtype=np.float32)
    scales = np.geomspace(0.3, 0.05, n_pcs - _SIGNAL).astype(np.float32)
    loadings, _ = np.linalg.qr(rng.standard_normal((n_genes, n_pcs)))
    loadings = loadings.astype(np.float32)
    gene_mean = rng.uniform(0.5, 3.0, n_genes).astype(np.float32)
    ds_dt = np.float32(1.0 / (n_times - 1))  # labels are 0 .. n_times - 1

    latent = np.empty((n_cells, _LATENT), dtype=np.float32)
    X_pca = np.empty((n_cells, n_pcs), dtype=np.float32)
    velocity = np.zeros((n_cells, n_pcs), dtype=np.float32)
    X = np.empty((n_cells, n_genes), dtype=np.float32)
    for lo in range(0, n_cells, _CHUNK):  # chunks: small temporaries, and cache-friendly products
        hi = min(lo + _CHUNK, n_cells)
        mean, dmean = _mean_path(s[lo:hi], fate[lo:hi])  # per unit of s
        z = latent[lo:hi]
        z[:] = mean + _NOISE * rng.standard_normal((hi - lo, _LATENT), dtype=np.float32)
        dz = dmean * ds_dt
        # nonlinear embedding in the leading components, noise of decreasing variance in the rest
        squash = np.tanh(z @ B)
        X_pca[lo:hi, :_SIGNAL] = z @ A + 0.5 * squash
        velocity[lo:hi, :_SIGNAL] = dz @ A + 0.5 * (1.0 - squash**2) * (dz @ B)
        X_pca[lo:hi, _SIGNAL:] = rng.standard_normal((hi - lo, n_pcs - _SIGNAL), dtype=np.float32) * scales
        np.matmul(X_pca[lo:hi], loadings.T, out=X[lo:hi])
        X[lo:hi] += gene_mean

    adata = ad.AnnData(X)
    adata.obs_names = pd.Index(np.arange(n_cells).astype(str))
    adata.var_names = pd.Index(np.char.add("gene", np.arange(n_genes).astype(str)))
    adata.obs["time"] = time_index.astype(np.float64)
    adata.obs["fate"] = pd.Categorical.from_codes(fate, categories=list(ATLAS_FATES))
    adata.obs["branch"] = pd.Categorical.from_codes(_segment(s, fate), categories=list(ATLAS_BRANCHES))
    adata.obsm["X_pca"] = X_pca
    adata.obsm["velocity_true"] = velocity
    adata.obsm["latent"] = latent
    adata.varm["PCs"] = loadings
    adata.uns["pca"] = {"mean": gene_mean}
    adata.uns["atlas"] = {
        "n_times": int(n_times), "n_pcs": int(n_pcs), "n_genes": int(n_genes), "seed": int(seed),
        "cells_per_time": counts.astype(np.int64), "fates": list(ATLAS_FATES), "growing_fate": "B2",
        "growth_fold": _GROWTH_FOLD, "split_times": [float(x * (n_times - 1)) for x in _SPLITS],
        "noise": _NOISE, "signal_pcs": _SIGNAL,
    }
    return adata


def _fate_mass(s: np.ndarray) -> np.ndarray:
    """Mass of each lineage at fractions ``s`` of the time course, shape (len(s), 3)."""
    rate = np.log(_GROWTH_FOLD) / (1.0 - _SPLITS[1])
    mass = np.tile(_PRIOR, (len(s), 1))
    mass[:, 2] *= np.exp(rate * np.maximum(s - _SPLITS[1], 0.0))
    return mass


def _bend(s: np.ndarray, start: float) -> tuple[np.ndarray, np.ndarray]:
    """``_SPREAD/2 · (s - start)₊² / (1 - start)²`` and its derivative: a smooth departure from 0."""
    after = np.maximum(s - start, 0.0) / (1.0 - start)
    scale = np.float32(0.5 * _SPREAD)
    return scale * after**2, scale * 2.0 * after / np.float32(1.0 - start)


def _mean_path(s: np.ndarray, fate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean latent state of each cell's lineage at its ``s``, and its derivative in ``s``."""
    n = len(s)
    mean = np.empty((n, _LATENT), dtype=np.float32)
    dmean = np.empty((n, _LATENT), dtype=np.float32)
    mean[:, 0], dmean[:, 0] = _SPEED * s, _SPEED
    bend1, dbend1 = _bend(s, _SPLITS[0])
    side1 = np.where(fate == 0, 1.0, -1.0).astype(np.float32)  # A up, B down
    mean[:, 1], dmean[:, 1] = side1 * (_PRIMING + bend1), side1 * dbend1
    bend2, dbend2 = _bend(s, _SPLITS[1])
    side2 = np.select([fate == 1, fate == 2], [1.0, -1.0], 0.0).astype(np.float32)  # B1, B2; A stays
    mean[:, 2], dmean[:, 2] = side2 * (_PRIMING + bend2), side2 * dbend2
    phase = np.float32(2.0 * np.pi) * s
    mean[:, 3], dmean[:, 3] = _WAVE * np.sin(phase), _WAVE * np.float32(2.0 * np.pi) * np.cos(phase)
    return mean, dmean


def fate_posterior(latent: np.ndarray, time: np.ndarray, n_times: int) -> np.ndarray:
    """Bayes-optimal fate probabilities (cells × ``ATLAS_FATES``) given the true latent state.

    The best any method can do from a cell's state: the posterior of its lineage under the
    generator's model (lineage shares at the cell's time, Gaussian offsets around the mean
    paths). Fate AUROCs of a method are bounded by this oracle's.
    """
    s = np.asarray(time, dtype=np.float32) / np.float32(n_times - 1)
    shares = _fate_mass(s.astype(np.float64))
    log_post = np.log(shares / shares.sum(axis=1, keepdims=True))
    for f in range(len(ATLAS_FATES)):
        mean, _ = _mean_path(s, np.full(len(s), f))
        log_post[:, f] -= 0.5 * np.sum((latent - mean) ** 2, axis=1) / _NOISE**2
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    return post / post.sum(axis=1, keepdims=True)


def _segment(s: np.ndarray, fate: np.ndarray) -> np.ndarray:
    """Codes into ``ATLAS_BRANCHES`` of where each cell sits."""
    first, second = s > _SPLITS[0], s > _SPLITS[1]
    return np.select(
        [~first, fate == 0, ~second, fate == 1],
        [0, 1, 2, 3],
        4,
    ).astype(np.int8)


def _allocate(total: int, p: np.ndarray) -> np.ndarray:
    """Integers proportional to ``p`` summing to ``total`` (largest remainders)."""
    raw = total * p
    counts = np.floor(raw).astype(np.int64)
    rest = total - counts.sum()
    counts[np.argsort(counts - raw)[:rest]] += 1
    return counts


def _check_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}.")
