"""Distances between (weighted) samples: W1, W2 (POT exact OT), unbiased Gaussian MMD² and energy distance.

``w1`` is the earth mover's distance with a Euclidean ground cost. It is the number that the
embryoid-body tables of NLSB and the Action Matching paper report under the name "W2".
``w2`` is the true 2-Wasserstein distance, ``sqrt(EMD with squared Euclidean cost)``.
``energy_distance`` is unbiased, so no prediction can beat a second sample of the truth on
average; the empirical W1 between finite samples in many dimensions can be lowered by pulling
the prediction together, which makes the energy distance the companion to W1 there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ._deprecation import UNSET, renamed_keyword

__all__ = ["w1", "w2", "mmd", "energy_distance"]


def _as_samples(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    array = np.asarray(x, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n, d) with n > 0; got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or Inf.")
    return array


def _as_weights(w: Any, n: int, name: str) -> np.ndarray:
    if w is None:
        return np.full(n, 1.0 / n)
    if isinstance(w, torch.Tensor):
        w = w.detach().cpu().numpy()
    weights = np.asarray(w, dtype=np.float64).reshape(-1)
    if weights.shape != (n,):
        raise ValueError(f"{name} must have one weight per sample ({n}); got shape {weights.shape}.")
    if np.any(weights < 0) or not np.all(np.isfinite(weights)) or weights.sum() <= 0:
        raise ValueError(f"{name} must be finite, non-negative and not all zero.")
    return weights / weights.sum()


def _emd(a: Any, b: Any, wa: Any, wb: Any, metric: str) -> float:
    import ot  # POT is imported where used: it costs seconds at import
    x, y = _as_samples(a, "a"), _as_samples(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"a and b must have the same dimension; got {x.shape[1]} and {y.shape[1]}.")
    cost = ot.dist(x, y, metric=metric)
    return float(ot.emd2(_as_weights(wa, len(x), "wa"), _as_weights(wb, len(y), "wb"), cost, numItermax=10_000_000))


def w1(a: Any, b: Any, wa: Any = None, wb: Any = None) -> float:
    """Earth mover's distance with Euclidean ground cost (1-Wasserstein).

    Parameters
    ----------
    a, b
        Samples of shape (n, d) and (m, d), numpy or torch.
    wa, wb
        Optional non-negative sample weights (normalised internally); uniform by default.
    """
    return _emd(a, b, wa, wb, "euclidean")


def w2(a: Any, b: Any, wa: Any = None, wb: Any = None) -> float:
    """True 2-Wasserstein distance: ``sqrt`` of the EMD with squared Euclidean cost."""
    return float(np.sqrt(max(_emd(a, b, wa, wb, "sqeuclidean"), 0.0)))


def _two_sample(a: Any, b: Any, wa: Any, wb: Any, function: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated samples (at least two each, same dimension) and their normalised weights."""
    x, y = _as_samples(a, "a"), _as_samples(b, "b")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"{function} needs at least two samples in each set.")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"a and b must have the same dimension; got {x.shape[1]} and {y.shape[1]}.")
    return x, y, _as_weights(wa, len(x), "wa"), _as_weights(wb, len(y), "wb")


def _discrepancy(kernel: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, pa: np.ndarray,
                 pb: np.ndarray) -> float:
    """Unbiased ``E k(X, X') + E k(Y, Y') − 2 E k(X, Y)``.

    The within-sample means are the weighted U-statistic ``sum_{i≠j} w_i w_j k_ij / (1 − sum_i w_i²)``,
    which reduces to the usual unbiased estimate for uniform weights.
    """

    def within(k: np.ndarray, p: np.ndarray) -> float:
        outer = np.outer(p, p)
        np.fill_diagonal(outer, 0.0)
        return float((outer * k).sum() / (1.0 - (p**2).sum()))

    return within(kernel(x, x), pa) + within(kernel(y, y), pb) - 2.0 * float(pa @ kernel(x, y) @ pb)


def _median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    """Median heuristic: ``sqrt(median |x_i - x_j|² / 2)`` over pairs of the pooled samples (2,000 at most)."""
    import ot  # POT is imported where used: it costs seconds at import
    z = np.concatenate([x, y])
    if len(z) > 2000:
        z = z[np.random.default_rng(0).choice(len(z), 2000, replace=False)]
    d2 = ot.dist(z, z, metric="sqeuclidean")
    med = np.median(d2[np.triu_indices(len(z), k=1)])
    return float(np.sqrt(max(med, 1e-12) / 2.0))


def mmd(
    a: Any,
    b: Any,
    wa: Any = None,
    wb: Any = None,
    bandwidth: float | Sequence[float] | str = "median",
    gamma: float | Sequence[float] | None = None,
    scale: float = 1.0,
    *,
    sigma: Any = UNSET,
) -> float:
    """Unbiased squared maximum mean discrepancy with a Gaussian kernel.

    The kernel is ``scale * exp(-gamma |x - y|²)``, summed over the given bandwidths. With
    weights, the within-sample sums use the weighted U-statistic
    ``sum_{i≠j} w_i w_j k_ij / (1 − sum_i w_i²)``, which reduces to the usual unbiased estimate
    for uniform weights.

    Parameters
    ----------
    a, b
        Samples of shape (n, d) and (m, d); both need at least two samples.
    wa, wb
        Optional sample weights.
    bandwidth
        Kernel width(s) in the units of the samples, ``gamma = 1 / (2 bandwidth²)``;
        ``"median"`` (default) uses the median heuristic on the pooled samples. Ignored when
        ``gamma`` is given.
    gamma
        Inverse squared length scale(s) of the kernel, overriding ``bandwidth``.
    scale
        Kernel amplitude.
    sigma
        Deprecated name of ``bandwidth``.

    Returns
    -------
    float
        The estimate of MMD²; unbiased, so it can be slightly negative for close distributions.
    """
    bandwidth = renamed_keyword(bandwidth, sigma, function="mmd", old="sigma", new="bandwidth")
    import ot  # POT is imported where used: it costs seconds at import
    x, y, pa, pb = _two_sample(a, b, wa, wb, "mmd")
    if gamma is None:
        if isinstance(bandwidth, str) and bandwidth == "median":
            bandwidths = [_median_bandwidth(x, y)]
        else:
            bandwidths = list(np.atleast_1d(np.asarray(bandwidth, dtype=float)))
        if any(not h > 0 for h in bandwidths):
            raise ValueError("Kernel bandwidths must be positive.")
        gammas = [1.0 / (2.0 * h**2) for h in bandwidths]
    else:
        gammas = list(np.atleast_1d(np.asarray(gamma, dtype=float)))
    if any(not g > 0 for g in gammas):
        raise ValueError("Kernel bandwidths must be positive.")

    def kernel(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        d2 = ot.dist(u, v, metric="sqeuclidean")
        return scale * sum(np.exp(-g * d2) for g in gammas)

    return _discrepancy(kernel, x, y, pa, pb)


def energy_distance(a: Any, b: Any, wa: Any = None, wb: Any = None) -> float:
    """Unbiased energy distance ``2 E|X − Y| − E|X − X'| − E|Y − Y'|`` (Euclidean norm).

    It is zero only when the two distributions are equal, and its estimate is unbiased: a second
    sample of the truth scores zero on average and anything else, a contracted copy included,
    scores more. It is the squared MMD with the distance kernel ``−|x − y|`` (no bandwidth to
    choose), in the units of the samples.

    Parameters
    ----------
    a, b
        Samples of shape (n, d) and (m, d); both need at least two samples.
    wa, wb
        Optional sample weights (the weighted U-statistic of :func:`mmd`).

    Returns
    -------
    float
        The estimate; it can be slightly negative for close distributions.
    """
    import ot  # POT is imported where used: it costs seconds at import
    x, y, pa, pb = _two_sample(a, b, wa, wb, "energy_distance")

    def kernel(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return -ot.dist(u, v, metric="euclidean")

    return _discrepancy(kernel, x, y, pa, pb)
