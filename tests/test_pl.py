"""Plots: each returns its Axes or Figure, honours ax=, draws what it should and saves to PNG."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

import trajinfer as tj

FAST = dict(hidden_dims=(32, 32), n_iter=30, batch_size=64, device="cpu", progress=False)  # settings of tj.fit


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fitted():
    adata = tj.datasets.petals(n_times=4, n_per_time=40, seed=0)
    model = tj.fit(adata, "time", method="ueam", **FAST)
    traj = tj.tl.simulate(adata, model, 0.0, n_steps=10, seed=0)
    return adata, model, traj


def _saves(fig: Figure, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.stat().st_size > 1000


# ---------------------------------------------------------------- trajectories
def test_trajectories_on_anndata(fitted, tmp_path):
    adata, _, traj = fitted
    ax = tj.pl.trajectories(adata, traj, n_trajectories=15)
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 15
    assert len(ax.collections) == 3  # cells, start markers, end markers
    assert len(ax.figure.axes) == 2  # numeric time: a colorbar
    assert ax.get_xlabel() == "dim 1"
    _saves(ax.figure, tmp_path, "trajectories")


def test_trajectories_honours_ax_and_categories(fitted):
    adata, _, traj = fitted
    fig, (left, right) = plt.subplots(1, 2)
    ax = tj.pl.trajectories(adata, traj, color="petal", n_trajectories=None, ax=right)
    assert ax is right and not left.has_data()
    assert len(ax.lines) == traj.n_particles
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["up", "right", "down", "left", "path start", "path end"]


def test_trajectories_arrays_basis_and_components():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    paths = np.cumsum(rng.normal(size=(6, 8, 3)), axis=0)
    ax = tj.pl.trajectories(X, paths, color=np.arange(50.0), components=(1, 2))
    assert len(ax.lines) == 8
    np.testing.assert_allclose(ax.lines[0].get_xydata(), paths[:, 0, 1:])
    only = tj.pl.trajectories(None, paths)
    assert len(only.collections) == 2

    adata = tj.datasets.petals(n_times=3, n_per_time=20)
    adata.obsm["X_pca"] = rng.normal(size=(adata.n_obs, 4))
    ax = tj.pl.trajectories(adata, paths, basis="pca", components=(0, 2))
    assert ax.get_xlabel() == "PCA 1" and ax.get_ylabel() == "PCA 3"
    with pytest.raises(ValueError, match="components"):
        tj.pl.trajectories(X, paths, components=(0, 5))
    with pytest.raises(KeyError, match="X_umap"):
        tj.pl.trajectories(adata, paths, basis="X_umap")


# -------------------------------------------------------------- velocity field
def test_velocity_stream_on_anndata(fitted, tmp_path):
    adata, model, _ = fitted
    fig, ax0 = plt.subplots()
    ax = tj.pl.velocity_stream(model, adata, "2.0", grid_size=15, ax=ax0)
    assert ax is ax0
    assert any(isinstance(c, LineCollection) for c in ax.collections)
    assert ax.get_title() == "Learned velocity at t = 2"
    _saves(fig, tmp_path, "stream")


def test_velocity_stream_fixes_other_coordinates_in_higher_dimensions():
    rng = np.random.default_rng(0)
    snapshots = [rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + [1.0, 0.0, 2.0]]
    model = tj.ActionMatching(method="am", hidden_dims=(32, 32), n_iter=30, batch_size=64, run=dict(device="cpu", progress=False))
    model.fit(tj.SnapshotPath(snapshots, [0.0, 1.0]))
    ax = tj.pl.velocity_stream(model, np.vstack(snapshots), 0.5, components=(0, 2), grid_size=12)
    assert any(isinstance(c, LineCollection) for c in ax.collections)
    with pytest.raises(ValueError, match="Unknown time"):
        tj.pl.velocity_stream(model, np.vstack(snapshots), "day 3")


# ---------------------------------------------------------------------- growth
def test_growth_is_centred_at_zero(fitted, tmp_path):
    adata, _, _ = fitted
    ax = tj.pl.growth(adata)
    points = ax.collections[0]
    assert points.norm.vmin == pytest.approx(-points.norm.vmax)
    assert points.norm(0.0) == pytest.approx(0.5)
    assert len(points.get_offsets()) == adata.n_obs
    _saves(ax.figure, tmp_path, "growth")
    fig, ax0 = plt.subplots()
    assert tj.pl.growth(adata, ax=ax0) is ax0
    with pytest.raises(KeyError, match="uam"):
        tj.pl.growth(adata, key="other_growth")


# ------------------------------------------------------------------- marginals
def test_marginals_one_time_point(fitted, tmp_path):
    adata, _, traj = fitted
    observed = np.asarray(adata.X[adata.obs["time"].to_numpy() == 3.0])
    fig, ax0 = plt.subplots()
    ax = tj.pl.marginals(observed, traj.X[-1], traj.weights[-1], ax=ax0)
    assert ax is ax0
    assert len(ax.collections) == 2  # observed: one filled density per component
    assert len(ax.lines) == 2 and all(line.get_linestyle() == "--" for line in ax.lines)  # simulated
    assert len(ax.get_legend().get_texts()) == 4
    _saves(fig, tmp_path, "marginals")


def test_marginals_grid_over_times(fitted, tmp_path):
    adata, _, traj = fitted
    times = adata.obs["time"].to_numpy()
    observed = {t: np.asarray(adata.X[times == t]) for t in (1.0, 2.0, 3.0)}
    fig = tj.pl.marginals(observed, traj, components=(0,), ncols=2)
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3 and all(len(ax.lines) == 1 and len(ax.collections) == 1 for ax in visible)
    _saves(fig, tmp_path, "marginals_grid")
    simulated = {t: traj.at(t)[0] for t in observed}
    assert len(tj.pl.marginals(observed, simulated).axes) == 3
    with pytest.raises(ValueError, match="ax=None"):
        tj.pl.marginals(observed, simulated, ax=plt.gca())


# ------------------------------------------------------------------------ loss
def test_loss_curve(fitted, tmp_path):
    adata, model, _ = fitted
    ax = tj.pl.loss(model, smooth=5)
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), model.loss_curve_)
    assert len(ax.lines[1].get_ydata()) == len(model.loss_curve_) - 4
    _saves(ax.figure, tmp_path, "loss")
    fig, ax0 = plt.subplots()
    assert tj.pl.loss(adata, ax=ax0) is ax0
    assert len(tj.pl.loss(np.arange(10.0), smooth=1).lines) == 1
    with pytest.raises(KeyError, match="loss curve"):
        tj.pl.loss(adata, key="missing")


# ------------------------------------------------------------- the fit record
def test_time_key_basis_and_loss_default_to_the_fit_record():
    adata = tj.datasets.petals(n_times=3, n_per_time=20, seed=0)
    adata.obs = adata.obs.rename(columns={"time": "stage"})
    model = tj.fit(adata, "stage", method="am", key_added="am1", **FAST)
    traj = tj.tl.simulate(adata, model, 0.0, n_steps=5)
    ax = tj.pl.trajectories(adata, traj, key="am1")
    assert ax.figure.axes[1].get_ylabel() == "stage"  # the colorbar of the fit's time key
    held_out = adata.copy()
    del held_out.uns["am1"]
    held_out.obsm["X_pca"] = held_out.X[:, ::-1]
    ax = tj.pl.trajectories(held_out, traj, model=model)
    assert ax.figure.axes[1].get_ylabel() == "stage" and ax.get_xlabel() == "dim 1"  # the fitted X, not X_pca
    with pytest.raises(KeyError, match="no column 'time'"):
        tj.pl.trajectories(held_out, traj)
    np.testing.assert_allclose(tj.pl.loss(adata, key="am1", smooth=1).lines[0].get_ydata(), model.loss_curve_)
    with pytest.raises(KeyError, match="key_added='tj'"):
        tj.pl.loss(adata)
