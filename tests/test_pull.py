"""tl.pull on ground truth: an Ornstein-Uhlenbeck process, whose forward and backward laws are Gaussian.

``dX = -θ (X - μ) dt + σ dW`` from ``X_0 ~ N(m_0, s_0²)`` (each of two independent coordinates)
has marginals ``N(m(t), v(t))`` with ``m(t) = μ + (m_0 - μ) e^{-θt}`` and
``v(t) = s_0² e^{-2θt} + σ²/(2θ) (1 - e^{-2θt})``, and ``Cov(X_0, X_1) = e^{-θ} v(0)``. So:

- the ancestors at t = 0 of the whole population at t = 1 are distributed as ``N(m(0), v(0))``,
  whatever the method;
- the SDE (eAM) ancestor of a cell at ``y`` has mean ``m(0) + β (y - m(1))`` with
  ``β = e^{-θ} v(0) / v(1)`` and variance ``v(0) - e^{-2θ} v(0)² / v(1)``; the probability-flow
  ODE (AM) maps ``y`` to ``m(0) + sqrt(v(0) / v(1)) (y - m(1))``, a steeper slope and no spread;
- of the cells right of the mean at t = 1, a fraction ``1/2 + arcsin(ρ)/π`` (ρ the correlation)
  descends from cells right of the mean at t = 0: about 0.66 for the SDE, 1 for the ODE.

Sampling error with 400 cells per time: the standard error of a mean is 0.5 / 20 = 0.025 and
the relative standard error of a variance sqrt(2/400) = 7%, for the earlier and the later
sample each; tolerances are about three to four of those plus the fit error of a 600-iteration
fit (measured: means within 0.05, variances within 9%).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import trajinfer as tj

THETA, MU, SIGMA, M0, S0 = 1.0, 2.0, 0.5, 0.0, 0.5
TIMES = (0.0, 0.5, 1.0)
FIT = dict(n_iter=600, lr=3e-3, hidden_dims=(64, 64), batch_size=256, progress=False, device="cpu")


def mean(t: float) -> float:
    return MU + (M0 - MU) * np.exp(-THETA * t)


def var(t: float) -> float:
    return S0**2 * np.exp(-2 * THETA * t) + SIGMA**2 / (2 * THETA) * (1 - np.exp(-2 * THETA * t))


SDE_SLOPE = np.exp(-THETA) * var(0) / var(1)  # 0.65
ODE_SLOPE = np.sqrt(var(0) / var(1))  # 1.33
SDE_SPREAD = var(0) - (np.exp(-THETA) * var(0)) ** 2 / var(1)  # 0.19
SDE_SAME_SIDE = 0.5 + np.arcsin(np.exp(-THETA) * var(0) / np.sqrt(var(0) * var(1))) / np.pi  # 0.66


@pytest.fixture(scope="module")
def ou() -> AnnData:
    rng = np.random.default_rng(0)
    n = 400
    X = np.concatenate([rng.normal(mean(t), np.sqrt(var(t)), size=(n, 2)) for t in TIMES])
    t = np.repeat(TIMES, n)
    obs = pd.DataFrame({"t": t, "half": np.where(X[:, 0] > [mean(s) for s in t], "right", "left")},
                       index=[f"c{i}" for i in range(len(X))])
    return AnnData(X=X.astype(np.float32), obs=obs)


def _ancestry(adata: AnnData, result: tj.tl.PullResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Later cells, their mean ancestor positions, and the earlier cells."""
    t = adata.obs["t"].to_numpy()
    early, late = adata.X[t == 0.0].astype(float), adata.X[t == 1.0].astype(float)
    assert list(result.ancestor_names) == list(adata.obs_names[t == 0.0])
    return late, result.ancestors @ early, early


def _check_tables(result: tj.tl.PullResult, n_late: int) -> None:
    assert result.ancestors.shape == (n_late, 400)
    np.testing.assert_allclose(np.asarray(result.ancestors.sum(axis=1)).ravel(), 1.0)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0)
    np.testing.assert_allclose(result.transition.sum(axis=1), 1.0)
    assert result.transition.index.name == "half @ 1.0" and result.transition.columns.name == "half @ 0.0"


def _check_population(late: np.ndarray, ancestors: np.ndarray, early: np.ndarray, result: tj.tl.PullResult) -> None:
    weights = np.asarray(result.ancestors.mean(axis=0)).ravel()  # ancestry of the whole later population
    pop_mean = weights @ early
    pop_var = weights @ (early - pop_mean) ** 2
    np.testing.assert_allclose(pop_mean, mean(0), atol=0.1)
    np.testing.assert_allclose(pop_var, var(0), rtol=0.15)


def test_stochastic_pull_reverses_the_sde(ou):
    model = tj.fit(ou, "t", method="eam", sigma=SIGMA, interpolation="sb", **FIT)
    result = tj.tl.pull(ou, model, 1.0, 0.0, cluster_key="half", n_repeats=4)
    _check_tables(result, 400)
    late, ancestors, early = _ancestry(ou, result)
    _check_population(late, ancestors, early, result)
    # the conditional law of an ancestor: its mean follows y with the SDE's slope, not the ODE's.
    # The kNN ball shrinks conditional means toward the centre where cells are sparse (with the
    # exact OU dynamics the scheme gives 0.62 +- 0.04 here), hence the asymmetric window
    slopes = [np.polyfit(late[:, c], ancestors[:, c], 1)[0] for c in range(2)]
    assert all(SDE_SLOPE - 0.2 < s < SDE_SLOPE + 0.1 for s in slopes), (slopes, SDE_SLOPE)
    spread = np.asarray(result.ancestors @ early**2) - ancestors**2
    np.testing.assert_allclose(spread.mean(axis=0), SDE_SPREAD, rtol=0.15)
    same_side = result.transition.loc["right", "right"], result.transition.loc["left", "left"]
    np.testing.assert_allclose(same_side, SDE_SAME_SIDE, atol=0.1)


def test_deterministic_pull_runs_the_ode_backward(ou):
    # the OT interpolant itself: the snapshots' density kernel would damp the rate at which the
    # spread changes (by about s² / (s² + h²)), a bias of the fit that this test of the pull excludes
    model = tj.fit(ou, "t", method="am", interpolation="ot", smoothing=0.0, **FIT)
    result = tj.tl.pull(ou, model, 1.0, 0.0, cluster_key="half")
    _check_tables(result, 400)
    late, ancestors, early = _ancestry(ou, result)
    _check_population(late, ancestors, early, result)
    slopes = [np.polyfit(late[:, c], ancestors[:, c], 1)[0] for c in range(2)]
    assert all(ODE_SLOPE - 0.3 < s < ODE_SLOPE + 0.2 for s in slopes), (slopes, ODE_SLOPE)
    # a monotone map: cells keep their side (up to the kNN blur at the mean)
    assert result.transition.loc["right", "right"] > 0.9 and result.transition.loc["left", "left"] > 0.9
    with pytest.raises(ValueError, match="back in time"):
        tj.tl.pull(ou, model, 0.0, 1.0, cluster_key="half")
    with pytest.raises(KeyError, match="no column"):
        tj.tl.pull(ou, model, 1.0, 0.0, cluster_key="missing")
