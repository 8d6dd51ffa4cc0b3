"""Distances between samples (W1, W2, unbiased MMD²) against closed forms and invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from trajinfer import metrics


def test_w1_and_w2_between_diracs_equal_the_distance():
    a, b = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])
    assert metrics.w1(a, b) == pytest.approx(5.0, rel=1e-12)
    assert metrics.w2(a, b) == pytest.approx(5.0, rel=1e-12)


def test_w1_and_w2_of_a_translated_sample_equal_the_shift():
    # W_p(μ, μ(· - c)) = |c| for every p: the translation coupling attains the lower bound
    # |E[y] - E[x]| = |c|. Exact up to LP/rounding precision.
    x = np.random.default_rng(0).normal(size=(150, 3))
    shift = np.array([0.5, -1.0, 2.0])
    assert metrics.w1(x, x + shift) == pytest.approx(np.linalg.norm(shift), rel=1e-9)
    assert metrics.w2(x, x + shift) == pytest.approx(np.linalg.norm(shift), rel=1e-9)
    assert metrics.w1(x, x) == pytest.approx(0.0, abs=1e-12)


def test_one_dimensional_sorted_sample_formulas():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.exponential(size=200) * 2
    # In 1-D the optimal coupling of equal-size uniform samples pairs sorted values.
    w2_sorted = math.sqrt(np.mean((np.sort(a) - np.sort(b)) ** 2))
    w1_sorted = np.mean(np.abs(np.sort(a) - np.sort(b)))
    assert metrics.w2(a, b) == pytest.approx(w2_sorted, rel=1e-9)
    assert metrics.w1(a[:, None], b[:, None]) == pytest.approx(w1_sorted, rel=1e-9)
    # Unequal sizes and weights: SciPy's 1-D W1.
    c, wc = rng.normal(size=70), rng.uniform(0.1, 1.0, size=70)
    assert metrics.w1(a, c, wb=wc) == pytest.approx(wasserstein_distance(a, c, v_weights=wc), rel=1e-8)


def test_weights_equal_duplicated_samples():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 2)), rng.normal(size=(5, 2)) + 1
    counts = np.array([1, 2, 3, 1, 4, 2])
    dup = np.repeat(a, counts, axis=0)
    assert metrics.w1(a, b, wa=counts) == pytest.approx(metrics.w1(dup, b), rel=1e-9)
    assert metrics.w2(a, b, wa=counts) == pytest.approx(metrics.w2(dup, b), rel=1e-9)
    # Weights are normalised: a multiple of the weights is the same distribution.
    assert metrics.w1(a, b, wa=7 * counts) == pytest.approx(metrics.w1(a, b, wa=counts), rel=1e-9)


def test_mmd_weights_are_honoured():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(40, 2)), rng.normal(size=(30, 2)) + 0.5
    base = metrics.mmd(a, b, bandwidth=1.0)
    # Uniform weights reproduce the unweighted estimate; scaling weights changes nothing.
    assert metrics.mmd(a, b, wa=np.ones(40), wb=torch.full((30,), 3.0), bandwidth=1.0) == pytest.approx(base, rel=1e-10)
    # Zero-weight samples are ignored (the weighted U-statistic drops them).
    junk = np.concatenate([a, rng.normal(size=(5, 2)) + 10])
    wa = np.concatenate([np.ones(40), np.zeros(5)])
    assert metrics.mmd(junk, b, wa=wa, bandwidth=1.0) == pytest.approx(base, rel=1e-10)
    # Integer weights change the cross term exactly as duplication does: compare with the
    # explicit weighted formula with k(x, y) = exp(-|x-y|²/2).
    w = rng.integers(1, 4, size=40).astype(float)
    p, q = w / w.sum(), np.full(30, 1 / 30)

    def k(u, v):
        return np.exp(-0.5 * ((u[:, None] - v[None]) ** 2).sum(-1))

    def within(kk, pp):
        off = np.outer(pp, pp) * kk
        return (off.sum() - np.trace(off)) / (1 - (pp**2).sum())

    expected = within(k(a, a), p) + within(k(b, b), q) - 2 * p @ k(a, b) @ q
    assert metrics.mmd(a, b, wa=w, bandwidth=1.0) == pytest.approx(expected, rel=1e-10)


def test_mmd_is_unbiased_for_equal_distributions_and_positive_for_shifted():
    rng = np.random.default_rng(4)
    same, shifted = [], []
    for _ in range(60):
        x, y = rng.normal(size=(80, 2)), rng.normal(size=(80, 2))
        same.append(metrics.mmd(x, y, bandwidth=1.0))
        shifted.append(metrics.mmd(x, y + 0.7, bandwidth=1.0))
    same, shifted = np.array(same), np.array(shifted)
    se = same.std(ddof=1) / math.sqrt(len(same))
    print(f"\n[mmd] same distribution: mean {same.mean():.2e} ± {se:.1e} (SE); shifted by 0.7: {shifted.mean():.3f}")
    # Unbiased U-statistic: E = 0 under equal distributions, so the 60-repeat mean lies within
    # 5 SE of 0 (the biased V-statistic would sit at ~+2/n·(1 - E k) ≈ +0.016, > 10 SE here).
    assert abs(same.mean()) < 5 * se
    assert (same < 0).any()  # an unbiased estimate must sometimes be negative
    # Shifted by c = (0.7, 0.7): population MMD² = 2(κ(0) - κ(c)) with κ(c) = E k(X, Y) =
    # (1/3) exp(-|c|²/6) for X, Y ~ N(·, I₂) and a unit-width kernel: 2/3 (1 - e^{-0.98/6}) = 0.1005.
    expected = 2 / 3 * (1 - math.exp(-0.98 / 6))
    se_shift = shifted.std(ddof=1) / math.sqrt(len(shifted))
    assert abs(shifted.mean() - expected) < 5 * se_shift
    assert shifted.mean() > 10 * se


def test_mmd_kernel_options():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 1
    # gamma = 1/(2 bandwidth²); several bandwidths sum kernels; scale multiplies.
    assert metrics.mmd(x, y, gamma=0.5) == pytest.approx(metrics.mmd(x, y, bandwidth=1.0), rel=1e-12)
    multi = metrics.mmd(x, y, bandwidth=[0.5, 2.0])
    assert multi == pytest.approx(metrics.mmd(x, y, bandwidth=0.5) + metrics.mmd(x, y, bandwidth=2.0), rel=1e-12)
    assert metrics.mmd(x, y, bandwidth=1.0, scale=3.0) == pytest.approx(3 * metrics.mmd(x, y, bandwidth=1.0), rel=1e-12)
    assert np.isfinite(metrics.mmd(x, y))  # median heuristic
    assert metrics.mmd(torch.as_tensor(x), torch.as_tensor(y), bandwidth=1.0) == pytest.approx(metrics.mmd(x, y, bandwidth=1.0))


def test_metric_input_errors():
    a, b = np.zeros((4, 2)), np.ones((3, 2))
    with pytest.raises(ValueError, match="same dimension"):
        metrics.w1(a, np.ones((3, 3)))
    with pytest.raises(ValueError, match="same dimension"):
        metrics.mmd(a, np.ones((3, 3)))
    with pytest.raises(ValueError, match="same dimension"):
        metrics.energy_distance(a, np.ones((3, 3)))
    bad = a.copy()
    bad[0, 0] = np.nan
    for fn in (metrics.w1, metrics.w2, metrics.mmd, metrics.energy_distance):
        with pytest.raises(ValueError, match="NaN or Inf"):
            fn(bad, b)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        metrics.w1(np.zeros((0, 2)), b)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        metrics.w2(np.zeros((2, 2, 2)), b)
    with pytest.raises(ValueError, match="one weight per sample"):
        metrics.w1(a, b, wa=[1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        metrics.w2(a, b, wb=[1, -1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        metrics.w1(a, b, wa=np.zeros(4))
    with pytest.raises(ValueError, match="at least two samples"):
        metrics.mmd(a[:1], b)
    with pytest.raises(ValueError, match="energy_distance needs at least two samples"):
        metrics.energy_distance(a, b[:1])
    with pytest.raises(ValueError, match="non-negative"):
        metrics.energy_distance(a, b, wb=[1, -1, 1])
    with pytest.raises(ValueError, match="positive"):
        metrics.mmd(a, b, gamma=[1.0, -0.5])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("bandwidth", [0.0, -1.0, [1.0, 0.0]])
def test_mmd_rejects_non_positive_bandwidth(bandwidth):
    a, b = np.zeros((4, 2)), np.ones((3, 2))
    with pytest.raises(ValueError, match="positive"):
        metrics.mmd(a, b, bandwidth=bandwidth)


def test_mmd_sigma_is_a_deprecated_name_of_bandwidth():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 1
    with pytest.warns(FutureWarning, match="bandwidth"):
        old = metrics.mmd(x, y, sigma=0.7)
    assert old == metrics.mmd(x, y, bandwidth=0.7)


def test_energy_distance_matches_scipy_in_one_dimension():
    # SciPy's energy_distance is the square root of the plug-in (V-statistic) estimate, whose
    # within-sample means include the zero diagonal: V = U (n − 1) / n.
    from scipy.stats import energy_distance as scipy_energy

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=60), rng.exponential(size=45)
    n, m = len(a), len(b)
    cross = np.abs(a[:, None] - b[None]).mean()
    u_aa = np.abs(a[:, None] - a[None]).sum() / (n * (n - 1))
    u_bb = np.abs(b[:, None] - b[None]).sum() / (m * (m - 1))
    ours = metrics.energy_distance(a, b)
    assert ours == pytest.approx(2 * cross - u_aa - u_bb, rel=1e-10)
    plug_in = ours + u_aa / n + u_bb / m
    assert math.sqrt(plug_in) == pytest.approx(scipy_energy(a, b), rel=1e-10)
    # Integer weights are duplicated samples in the cross term and the weighted U-statistic within.
    w = rng.integers(1, 4, size=n).astype(float)
    p = w / w.sum()
    off = np.outer(p, p) * np.abs(a[:, None] - a[None])
    expected = 2 * p @ np.abs(a[:, None] - b[None]) @ np.full(m, 1 / m) - (off.sum() - np.trace(off)) / (1 - (p**2).sum()) - u_bb
    assert metrics.energy_distance(a, b, wa=w) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("c", [1.0, 0.7, 0.5])
def test_energy_distance_is_unbiased_and_penalises_contraction_where_w1_rewards_it(c):
    # X ~ N(0, c² I), Y ~ N(0, I) in d = 50: |X − Y| is a scaled chi with mean
    # sqrt(1 + c²) μ_d, μ_d = sqrt(2) Γ((d + 1)/2) / Γ(d/2), so the energy distance is
    # μ_d (2 sqrt(1 + c²) − sqrt(2) (1 + c)): zero at c = 1, positive for every contraction.
    from scipy.special import gammaln

    d, n, reps = 50, 200, 30
    mu = math.sqrt(2) * math.exp(gammaln((d + 1) / 2) - gammaln(d / 2))
    exact = mu * (2 * math.sqrt(1 + c * c) - math.sqrt(2) * (1 + c))
    rng = np.random.default_rng(5)
    est = [metrics.energy_distance(c * rng.normal(size=(n, d)), rng.normal(size=(n, d))) for _ in range(reps)]
    # Five standard errors of the mean over the replicates.
    assert abs(np.mean(est) - exact) < 5 * np.std(est, ddof=1) / math.sqrt(reps)
    # The empirical W1 between finite samples prefers the contracted copy in 50 dimensions,
    # which is why the benchmarks report the energy distance beside it.
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    if c < 1:
        assert metrics.w1(c * x, y) < metrics.w1(x, y)
