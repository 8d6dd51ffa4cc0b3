"""Marginal paths: snapshot mixture, OT and Schrödinger-bridge interpolants, masses, callables.

Statistical checks use binomial or Gaussian standard errors; each bound is 5 SE unless noted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import trajinfer as tj
from trajinfer.paths import CallablePath, SnapshotPath


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def separated() -> SnapshotPath:
    """Three snapshots at t = 0, 1, 3 (uneven spacing, unequal sizes) living in
    [10k, 10k + 1) for k = 0, 1, 2: far apart, with no overlap at all."""
    rng = np.random.default_rng(0)
    snaps = [10.0 * k + rng.uniform(size=(n, 1)) for k, n in enumerate((50, 80, 60))]
    return SnapshotPath(snaps, [0.0, 1.0, 3.0], interpolation="mixture")


@pytest.mark.parametrize("t_user,k,lam", [(0.3, 0, 0.3), (2.5, 1, 0.75), (1.4, 1, 0.2)])
def test_mixture_of_transported_copies_moves_between_snapshots(separated, t_user, k, lam):
    n = 10000
    tau = torch.full((n,), t_user / 3.0)  # internal time: t_range is (0, 3)
    x = separated.sample(tau, _gen(1))[:, 0].numpy()
    # Both transported copies sit between the snapshots: the mean moves linearly (the
    # barycentric image of a snapshot has the next snapshot's mean), every sample is near
    # the displacement interpolant of the cell ranges [10k, 10k + 1) and [10k + 10, 10k + 11)
    # (within a few kernel widths), and no sample is left in either snapshot's range: the plain
    # mixture (1 − λ)A + λB would put a fraction λ at 10k + 10.
    means = [float(separated.snapshot(j)[:, 0].mean()) for j in (k, k + 1)]
    # SE of the mean: sd (< 0.3 from the uniform cell ranges plus the kernel) / sqrt(n) = 0.003
    assert abs(x.mean() - ((1 - lam) * means[0] + lam * means[1])) < 0.03
    lo, hi = 10 * k + 10 * lam, 10 * k + 10 * lam + 1
    width = float(separated.bandwidths.max())
    assert np.mean((x > lo - 5 * width) & (x < hi + 5 * width)) > 0.999
    assert 0 < width < 0.1  # copies of unequal-size snapshots differ by less than a cell gap


def test_mixture_bandwidth_is_the_median_gap_between_copies_over_root_8():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(40, 2)), rng.normal(size=(70, 2)) + 3.0
    path = SnapshotPath([a, b], [0.0, 1.0], interpolation="mixture", pairing="full")
    plan = ot_plan(a, b)
    a_half = a + 0.5 * ((plan @ b) / plan.sum(1, keepdims=True) - a)
    b_half = b + 0.5 * ((plan.T @ a) / plan.sum(0)[:, None] - b)
    gaps = np.concatenate([
        np.linalg.norm(a_half[:, None] - b_half[None], axis=2).min(1),
        np.linalg.norm(b_half[:, None] - a_half[None], axis=2).min(1),
    ])
    np.testing.assert_allclose(path._mixture_bandwidths().numpy(), np.median(gaps) / math.sqrt(8.0), rtol=1e-4)
    # equal sizes: the exact plan is a permutation, the copies coincide and no kernel is needed
    same = SnapshotPath([a, b[:40]], [0.0, 1.0], interpolation="mixture")
    assert float(same._mixture_bandwidths().abs().max()) == 0.0
    # "auto" takes the larger of it and each snapshot's density bandwidth
    np.testing.assert_allclose(path.bandwidths.numpy(), np.maximum(np.median(gaps) / math.sqrt(8.0), path._density_bandwidths().numpy()), rtol=1e-4)


@pytest.mark.parametrize("interpolation", ["mixture", "ot", "sb"])
def test_auto_smoothing_is_scotts_rule_scaled_and_widens_with_the_dimension(interpolation):
    from trajinfer.paths import KDE_FACTOR

    rng = np.random.default_rng(4)
    widths = []
    for d in (2, 50):
        snaps = [rng.normal(scale=s, size=(300, d)) + 0.1 * k for k, s in enumerate((1.0, 2.0, 3.0))]  # equal sizes: no mixture kernel
        path = SnapshotPath(snaps, [0.0, 1.0, 2.0], interpolation=interpolation, sigma=1e-3)
        spread = float(np.median([math.sqrt(s.var(0).mean()) for s in snaps]))
        # one width for the whole path: a kernel that changed over time would itself move the cells
        np.testing.assert_allclose(path.bandwidths.numpy(), KDE_FACTOR * spread * 300 ** (-1 / (d + 4)), rtol=1e-4)
        widths.append(float(path.bandwidths[0]) / spread)
    # the kernel covers a larger part of the spread where the cells are sparser
    assert widths[1] > 2 * widths[0]


def ot_plan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import ot

    cost = 0.5 * ot.dist(a, b, metric="sqeuclidean")
    return ot.emd(np.full(len(a), 1 / len(a)), np.full(len(b), 1 / len(b)), cost)


def test_mixture_is_exact_at_snapshot_times():
    rng = np.random.default_rng(5)
    snaps = [10.0 * k + rng.uniform(size=(60, 1)) for k in range(3)]
    path = SnapshotPath(snaps, [0.0, 1.0, 3.0], interpolation="mixture", smoothing=0.0)  # the interpolant itself
    for k, tau in enumerate((0.0, 1.0 / 3.0, 1.0)):
        x = path.sample(torch.full((500,), tau), _gen(k))
        assert np.isin(x[:, 0].numpy(), path.snapshot(k)[:, 0].numpy()).all()


def test_list_and_per_row_inputs_are_equivalent():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 2)), rng.normal(size=(40, 2)) + 5
    from_list = SnapshotPath([b, a], [2.0, 0.5])  # unsorted times are sorted
    X = np.concatenate([a, b])
    t = np.array([0.5] * 30 + [2.0] * 40)
    perm = rng.permutation(70)
    from_rows = SnapshotPath(X[perm], t[perm])
    assert from_list.t_range == from_rows.t_range == (0.5, 2.0)
    np.testing.assert_array_equal(from_list.times, [0.5, 2.0])
    for k in range(2):
        left = np.sort(from_list.snapshot(k).numpy(), axis=0)
        right = np.sort(from_rows.snapshot(k).numpy(), axis=0)
        np.testing.assert_allclose(left, right, rtol=1e-6)


def test_each_time_point_gets_equal_weight_regardless_of_size():
    rng = np.random.default_rng(2)
    small = np.arange(10, dtype=float)[:, None]  # 10 distinct rows, values 0..9, mean 4.5
    large = 100.0 + rng.normal(size=(1000, 1))
    for interpolation in ("mixture", "ot"):
        path = SnapshotPath([small, large], [0.0, 1.0], interpolation=interpolation)
        n = 20000
        x = path.sample(torch.full((n,), 0.5), _gen(3))[:, 0].numpy()
        # λ = ½ halfway between the snapshots' means (not weighted 10 : 1000 by cell counts);
        # sd of x about 30, SE 0.2; 5 SE = 1.
        assert abs(x.mean() - 0.5 * (4.5 + float(large.mean()))) < 1.0


def _standardised(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    z = rng.normal(size=n)
    return (mean + (z - z.mean()) / z.std())[:, None]


@pytest.fixture(scope="module")
def gaussians() -> tuple[np.ndarray, np.ndarray]:
    """Snapshots with sample mean exactly 0 and 4 and sample variance exactly 1."""
    rng = np.random.default_rng(4)
    return _standardised(rng, 3000, 0.0), _standardised(rng, 3000, 4.0)


def _draw_many(path: SnapshotPath, tau: float, n_batches: int, batch: int = 500, seed: int = 0) -> np.ndarray:
    gen = _gen(seed)
    return torch.cat([path.sample(torch.full((batch,), tau), gen) for _ in range(n_batches)])[:, 0].numpy()


def test_ot_path_is_displacement_interpolant_not_mixture(gaussians):
    a, b = gaussians
    ot_path = SnapshotPath([a, b], [0.0, 1.0], interpolation="ot", smoothing=0.0)
    x_ot = _draw_many(ot_path, 0.5, n_batches=6)  # 3000 samples, OT-paired within batches of 500
    near_ot = np.mean(np.abs(x_ot - 2) < 1)
    print(f"\n[ot path] λ=½: mean {x_ot.mean():.3f} var {x_ot.var():.3f} P(|x-2|<1) {near_ot:.3f}")
    # The W2 geodesic between N(0,1) and N(4,1) is N(2,1): P(|x-2|<1) = 0.683; the mixture
    # ½N(0,1) + ½N(4,1) has variance 5 and P(|x-2|<1) = 0.157. n = 3000: SEs 0.018 (mean)
    # and 0.0085 (fractions).
    assert abs(x_ot.mean() - 2.0) < 0.09
    # Minibatch OT of 500 independent draws pairs quantiles of two different samples, which
    # shrinks the midpoint variance slightly below 1 (measured 0.92-0.98); the SE of the
    # variance itself is sqrt(2/3000) = 0.026. Bounds [0.8, 1.12] vs 5 for the mixture.
    assert 0.8 < x_ot.var() < 1.12
    assert near_ot > 0.62
    # Endpoints are the snapshots themselves.
    x0 = ot_path.sample(torch.zeros(200), _gen(5))[:, 0].numpy()
    x1 = ot_path.sample(torch.ones(200), _gen(6))[:, 0].numpy()
    assert np.isin(x0, ot_path.snapshot(0)[:, 0].numpy()).all()
    assert np.isin(x1, ot_path.snapshot(1)[:, 0].numpy()).all()


def test_sb_adds_brownian_bridge_variance_on_degenerate_snapshots():
    # All of snapshot 0 at the origin and all of snapshot 1 at (3, 3), Δt = 2: every coupling is
    # the same, so x_λ = 3λ + σ sqrt(λ(1-λ)Δt) ξ exactly.
    sigma, lam, dt = 0.7, 0.25, 2.0
    path = SnapshotPath([np.zeros((100, 2)), np.full((100, 2), 3.0)], [1.0, 3.0], interpolation="sb", sigma=sigma, smoothing=0.0)
    gen = _gen(7)
    x = torch.cat([path.sample(torch.full((500,), lam), gen) for _ in range(8)]).numpy()
    var = sigma**2 * lam * (1 - lam) * dt  # 0.184
    print(f"\n[sb bridge] mean {x.mean(0)}, var {x.var(0)} (exact {3 * lam}, {var:.4f})")
    # 4000 samples per coordinate: mean SE sqrt(0.184/4000) = 0.0068, variance SE
    # 0.184·sqrt(2/4000) = 0.0041; 5 SE.
    np.testing.assert_allclose(x.mean(0), 3 * lam, atol=5 * math.sqrt(var / 4000))
    np.testing.assert_allclose(x.var(0), var, atol=5 * var * math.sqrt(2 / 4000))


def test_sb_marginal_variance_matches_gaussian_entropic_coupling(gaussians):
    # Between N(0,1) and N(4,1) the entropic plan for cost |x-y|²/2 and ε = σ²Δt is Gaussian with
    # cross-covariance c = (√(ε² + 4) - ε)/2 (joint precision off-diagonal -1/ε). At λ = ½:
    # Var = ¼ + ¼ + ½c + σ²Δt/4. With σ = 1, Δt = 2: c = 0.414, Var = 1.207 (ε = σ² instead would
    # give 1.309, no Δt in the noise 1.060).
    a, b = gaussians
    sigma, dt = 1.0, 2.0
    path = SnapshotPath([a, b], [0.0, dt], interpolation="sb", sigma=sigma, smoothing=0.0)
    # 6000 samples in batches of 250 (Sinkhorn cost grows quickly with the batch size).
    x = _draw_many(path, 0.5, n_batches=24, batch=250, seed=8)
    eps = sigma**2 * dt
    c = (math.sqrt(eps**2 + 4) - eps) / 2
    expected = 0.5 + 0.5 * c + sigma**2 * dt / 4
    print(f"\n[sb path] λ=½ var {x.var():.4f} (closed form {expected:.4f}), mean {x.mean():.4f}")
    # Variance SE 1.21·sqrt(2/6000) = 0.022 (plus a small finite-batch coupling bias, measured
    # -0.02 at batch 200-250, +0.02 at 500); bound 0.08 ≈ 3.5 SE, below the 0.10 and 0.15 gaps to
    # the wrong-ε and missing-Δt variants.
    assert abs(x.var() - expected) < 0.08
    assert abs(x.mean() - 2.0) < 5 * math.sqrt(expected / 6000)


def test_masses_interpolate_linearly_in_time():
    rng = np.random.default_rng(5)
    snaps = [rng.normal(size=(5, 2)) for _ in range(3)]
    path = SnapshotPath(snaps, [0.0, 1.0, 3.0], masses=[1.0, 2.0, 5.0])
    tau = torch.tensor([0.0, 1 / 6, 1 / 3, 2 / 3, 1.0])  # t = 0, 0.5, 1, 2, 3
    np.testing.assert_allclose(path.mass(tau).numpy(), [1.0, 1.5, 2.0, 3.5, 5.0], rtol=1e-6)
    np.testing.assert_allclose(SnapshotPath(snaps, [0, 1, 3]).mass(tau).numpy(), 1.0)


def test_smoothing_adds_gaussian_noise():
    path = SnapshotPath([np.zeros((10, 1)), np.ones((10, 1))], [0, 1], smoothing=0.5)
    x = path.sample(torch.zeros(8000), _gen(9))[:, 0].numpy()
    # Var 0.25, SE 0.25·sqrt(2/8000) = 0.004; 5 SE = 0.02.
    assert abs(x.var() - 0.25) < 0.02


def test_sampling_is_reproducible_with_a_generator(gaussians):
    a, b = gaussians
    for interp in ("mixture", "ot", "sb"):
        path = SnapshotPath([a, b], [0, 1], interpolation=interp, sigma=2.0)
        tau = torch.rand(64, generator=_gen(10))
        torch.testing.assert_close(path.sample(tau, _gen(11)), path.sample(tau, _gen(11)))


def test_callable_path_maps_user_time_and_mass():
    seen = []

    def draw(t: torch.Tensor) -> np.ndarray:
        seen.append(t.clone())
        return np.stack([t.numpy(), 2 * t.numpy()], axis=1)  # numpy output is accepted

    path = CallablePath(draw, t_range=(2.0, 6.0), mass_fn=lambda t: t / 2)
    assert path.dim == 2
    x = path.sample(torch.tensor([0.0, 0.25, 1.0]))
    np.testing.assert_allclose(x.numpy(), [[2, 4], [3, 6], [6, 12]])
    assert x.dtype == torch.float32
    np.testing.assert_allclose(path.mass(torch.tensor([0.0, 0.5])).numpy(), [1.0, 2.0])


def test_callable_path_errors():
    with pytest.raises(ValueError, match=r"shape \(B, d\)"):
        CallablePath(lambda t: t)  # returns (B,), not (B, d)
    with pytest.raises(ValueError, match="increasing"):
        CallablePath(lambda t: t[:, None], t_range=(1.0, 0.0))
    with pytest.raises(TypeError, match="callable"):
        CallablePath(np.zeros((3, 2)))


def test_snapshot_path_errors():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(5, 2)), rng.normal(size=(6, 2))
    with pytest.raises(ValueError, match="Unknown interpolation"):
        SnapshotPath([a, b], [0, 1], interpolation="linear")
    with pytest.raises(ValueError, match="needs a positive sigma"):
        SnapshotPath([a, b], [0, 1], interpolation="sb")
    with pytest.raises(ValueError, match="smoothing"):
        SnapshotPath([a, b], [0, 1], smoothing=-1)
    with pytest.raises(ValueError, match="At least two distinct time points"):
        SnapshotPath([a], [0])
    with pytest.raises(ValueError, match="Time point 1 has 1 sample"):
        SnapshotPath([a, b[:1]], [0, 1])
    bad = a.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        SnapshotPath([bad, b], [0, 1])
    with pytest.raises(ValueError, match="NaN or Inf"):
        SnapshotPath([a, b], [0, np.inf])
    with pytest.raises(ValueError, match="not numeric"):
        SnapshotPath([a, b], ["day1", "day2"])
    with pytest.raises(ValueError, match="times must be numeric"):
        SnapshotPath(np.concatenate([a, b]), ["d1"] * 5 + ["d2"] * 6)
    with pytest.raises(ValueError, match="one entry per row"):
        SnapshotPath(np.concatenate([a, b]), [0] * 5)
    with pytest.raises(ValueError, match="2 times|snapshot arrays"):
        SnapshotPath([a, b], [0, 1, 2])
    with pytest.raises(ValueError, match="same number of features"):
        SnapshotPath([a, rng.normal(size=(6, 3))], [0, 1])
    with pytest.raises(ValueError, match="distinct"):
        SnapshotPath([a, b], [1, 1])
    with pytest.raises(ValueError, match="masses"):
        SnapshotPath([a, b], [0, 1], masses=[1.0, -1.0])
    with pytest.raises(ValueError, match="masses"):
        SnapshotPath([a, b], [0, 1], masses=[1.0])


def test_fit_accepts_snapshot_path_in_user_time():
    rng = np.random.default_rng(7)
    path = SnapshotPath([rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + 1], [2.0, 5.0])
    est = tj.ActionMatching(hidden_dims=(8,), n_iter=3, batch_size=16, run=dict(device="cpu", progress=False)).fit(path)
    assert est.t_range_ == (2.0, 5.0) and est.dim_ == 2
    with pytest.raises(ValueError, match="t_range applies to callable paths only"):
        est.fit(path, t_range=(0.0, 1.0))


def test_ot_pairing_is_optimal_for_large_batches():
    import warnings

    rng = np.random.default_rng(11)
    path = SnapshotPath([rng.normal(size=(3000, 1)), rng.normal(size=(3000, 1)) + 4], [0, 1], interpolation="ot")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a truncated network simplex must not pass silently
        x = path.sample(torch.full((2000,), 0.5), _gen(12))
    # the 1-D optimal plan between N(0, 1) and N(4, 1) is the shift by 4, so midway the samples
    # are a + 2 ~ N(2, 1); independent pairs would give (a + b)/2 of variance ¼ + ¼ = 0.5. The sample
    # variance of 2000 draws has SE sqrt(2/2000) = 0.03 and the mean SE 0.02: bounds ~5 SE.
    assert x.shape == (2000, 1) and torch.isfinite(x).all()
    assert abs(x.mean().item() - 2.0) < 0.1 and 0.85 < x.var().item() < 1.15


def test_full_ot_pairing_interpolates_matched_quantiles():
    # In 1-D the OT plan between two equal-size samples pairs the i-th smallest of each, so every
    # sample of the full-pairing path at λ = ¼ is (¾) a_(i) + (¼) b_(i) for some i, exactly.
    rng = np.random.default_rng(21)
    a, b = rng.normal(size=(300, 1)), rng.gamma(2.0, size=(300, 1)) + 3
    path = SnapshotPath([a, b], [0.0, 2.0], interpolation="ot", pairing="full", smoothing=0.0)
    assert path.pairing == "full"
    x = path.sample(torch.full((2000,), 0.25), _gen(22))[:, 0].numpy()
    allowed = 0.75 * np.sort(a[:, 0]) + 0.25 * np.sort(b[:, 0])
    gaps = np.abs(x[:, None] - allowed[None, :].astype(np.float32)).min(axis=1)
    assert gaps.max() < 1e-5
    # draws cover the plan: about 2000 draws over 300 pairs leave few pairs unseen (expected 300·e^(-6.7) ≈ 0.4)
    assert len(np.unique(np.round(x, 5))) > 290


def test_pairing_auto_uses_full_plans_only_when_small():
    rng = np.random.default_rng(23)
    small = SnapshotPath([rng.normal(size=(50, 2)), rng.normal(size=(40, 2))], [0, 1], interpolation="ot")
    assert small.pairing == "full"
    large = SnapshotPath([rng.normal(size=(2100, 1)), rng.normal(size=(2000, 1))], [0, 1], interpolation="ot")
    assert large.pairing == "minibatch"  # 4.2e6 entries > 4e6
    assert SnapshotPath([rng.normal(size=(5, 1))] * 2, [0, 1], interpolation="mixture").pairing == "full"
    sb = SnapshotPath([np.zeros((30, 2)), np.full((30, 2), 3.0)], [0, 2], interpolation="sb", sigma=0.5, pairing="full", smoothing=0.0)
    x = sb.to("cpu").sample(torch.full((4000,), 0.5), _gen(24)).numpy()
    # bridge noise only (every coupling has the same endpoints): Var = σ²·λ(1−λ)·Δt = 0.125, SE 0.0028
    assert abs(x.var(0).mean() - 0.125) < 0.015
    with pytest.raises(ValueError, match="Unknown pairing"):
        SnapshotPath([rng.normal(size=(5, 1))] * 2, [0, 1], interpolation="ot", pairing="global")


@pytest.mark.parametrize("interpolation", ["ot", "mixture"])
def test_minibatch_pairing_solves_assignments_for_interior_rows_only(monkeypatch, interpolation):
    # A loss minibatch is one sampling call: B rows at τ = 0, B at τ = 1 and B interior ones.
    # Rows on a snapshot are plain draws of its cells; only the interior rows enter the
    # per-interval assignment problems (whose exact solution costs about n³ in their size).
    rng = np.random.default_rng(25)
    snaps = [rng.normal(size=(40, 2)) + 3 * k for k in range(4)]
    path = SnapshotPath(snaps, [0, 1, 2, 3], interpolation=interpolation, pairing="minibatch", smoothing=0.0)
    sizes = []
    plan = path._plan
    monkeypatch.setattr(path, "_plan", lambda a, b, k: sizes.append(len(a)) or plan(a, b, k))
    tau = torch.rand(60, generator=_gen(26)) * 0.98 + 0.01
    x0, x1, xt = path.sample_triplet(tau, _gen(27))
    assert sum(sizes) == 60
    for x, snap in ((x0, snaps[0]), (x1, snaps[-1])):  # the boundary rows are cells of the first and last snapshot
        gaps = np.abs(x.numpy()[:, None, :] - snap[None].astype(np.float32)).max(axis=2).min(axis=1)
        assert gaps.max() < 1e-6


def test_a_large_minibatch_draw_is_paired_in_bounded_blocks(monkeypatch):
    # One draw of many samples at one time (e.g. the interpolation baseline of tl.holdout on an
    # atlas) would otherwise be one assignment problem of that size: cubic time, quadratic memory.
    rng = np.random.default_rng(28)
    snaps = [rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + np.array([4.0, 0.0])]
    path = SnapshotPath(snaps, [0, 1], interpolation="ot", pairing="minibatch")
    monkeypatch.setattr(tj.paths, "MINIBATCH_PAIRING_MAX_ROWS", 64)
    sizes = []
    plan = path._plan
    monkeypatch.setattr(path, "_plan", lambda a, b, k: sizes.append(len(a)) or plan(a, b, k))
    x = path.sample(torch.full((300,), 0.5), _gen(29)).numpy()
    assert sizes == [64, 64, 64, 64, 44]
    # each block is still an OT pairing: the midpoints sit halfway, spread less than the snapshots
    assert abs(x[:, 0].mean() - 2.0) < 0.2 and x[:, 0].std() < snaps[0][:, 0].std()
