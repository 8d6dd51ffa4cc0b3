"""Velocities where scvelo and CellRank read them, embedding maps, transition matrices, CellRank kernels."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from matplotlib.collections import LineCollection

import trajinfer as tj

FAST = dict(n_iter=300, lr=3e-3, hidden_dims=(32, 32), batch_size=128, progress=False, device="cpu")
A = np.array([[1.0, 0.5], [-0.5, 1.0], [0.3, 0.2]])  # a linear stand-in for UMAP: X_umap = X_pca @ A


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _genes_with_pca(seed: int = 0) -> AnnData:
    """8 genes spanned by 3 orthonormal loadings; clouds drift one unit per day along the first PC."""
    rng = np.random.default_rng(seed)
    n, genes, times = 150, 8, (0.0, 1.0, 2.0)
    Z = np.concatenate([rng.normal(size=(n, 3)) * 0.5 + [t, 0.0, 0.0] for t in times])
    loadings, _ = np.linalg.qr(rng.normal(size=(genes, 3)))
    mean = rng.normal(size=genes)
    obs = pd.DataFrame({"day": np.repeat(times, n)}, index=[f"c{i}" for i in range(len(Z))])
    adata = AnnData(X=(Z @ loadings.T + mean).astype(np.float32), obs=obs)
    adata.obsm["X_pca"] = Z.astype(np.float32)
    adata.varm["PCs"] = loadings.astype(np.float32)
    adata.uns["pca"] = {"mean": mean}
    adata.obsm["X_umap"] = (Z @ A).astype(np.float32)
    return adata


@pytest.fixture(scope="module")
def fitted():
    adata = _genes_with_pca()
    model = tj.fit(adata, "day", method="am", interpolation="ot", **FAST)
    return adata, model


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_fit_writes_velocities_under_scverse_names(fitted):
    adata, _ = fitted
    V = adata.obsm["tj_velocity"]
    np.testing.assert_array_equal(adata.obsm["velocity_pca"], V)
    np.testing.assert_allclose(adata.layers["velocity"], V @ adata.varm["PCs"].T, rtol=1e-5, atol=1e-6)
    assert adata.var["velocity_genes"].all()
    # the kNN-regression projection of a linear embedding is the linear map of the velocity
    projected, exact = adata.obsm["velocity_umap"], V @ A
    assert np.median(_cosine(projected, exact)) > 0.98
    assert 0.75 < np.median(np.linalg.norm(projected, axis=1) / np.linalg.norm(exact, axis=1)) < 1.1
    params = adata.uns["velocity_params"]
    assert params["mode"] == "trajinfer" and list(params["embeddings"]) == ["pca", "umap"]


def test_foreign_entries_are_replaced_with_a_warning_and_refits_are_quiet():
    adata = _genes_with_pca()
    adata.obsm["velocity_pca"] = np.zeros((adata.n_obs, 3), dtype=np.float32)
    with pytest.warns(UserWarning, match="velocity_pca"):
        tj.fit(adata, "day", method="am", **dict(FAST, n_iter=20))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tj.fit(adata, "day", method="am", **dict(FAST, n_iter=20))
    adata.obsm["X_tsne"] = adata.obsm["X_umap"][:, ::-1].copy()
    assert tj.tl.velocity_embedding(adata, basis="tsne", layer=False) == ["obsm/velocity_pca", "obsm/velocity_tsne"]
    assert list(adata.uns["velocity_params"]["embeddings"]) == ["pca", "umap", "tsne"]


def test_use_rep_x_gives_the_layer_itself():
    adata = _genes_with_pca()
    del adata.obsm["X_pca"], adata.obsm["X_umap"]
    tj.fit(adata, "day", method="am", use_rep="X", **dict(FAST, n_iter=20))
    np.testing.assert_array_equal(adata.layers["velocity"], adata.obsm["tj_velocity"])
    assert not any(k.startswith("velocity_") for k in adata.obsm)


def test_embed_maps_positions_by_knn_regression(fitted):
    adata, _ = fitted
    Z = adata.obsm["X_pca"].astype(float)
    inside = np.linalg.norm(Z - Z.mean(axis=0), axis=1) < 1.0
    mapped = tj.tl.embed(adata, Z[inside])
    assert np.abs(mapped - Z[inside] @ A).mean() < 0.1  # kernel smoothing of half a neighbourhood radius
    paths = np.stack([Z[:5], Z[:5] + [0.5, 0.0, 0.0]])
    assert tj.tl.embed(adata, paths).shape == (2, 5, 2)
    far = np.array([[0.0, 0.0, 0.0], [1.0, 8.0, 0.0]])  # on the data, and far from every cell
    mapped = tj.tl.embed(adata, far, reach=2.0)
    assert np.isfinite(mapped[0]).all() and np.isnan(mapped[1]).all()
    assert np.isfinite(tj.tl.embed(adata, far)).all()
    with pytest.raises(KeyError, match="X_tsne"):
        tj.tl.embed(adata, Z, basis="X_tsne")


def test_trajectories_and_stream_on_an_embedding(fitted, tmp_path):
    adata, model = fitted
    traj = tj.tl.simulate(adata, model, 0.0, 2.0, n_steps=10)
    ax = tj.pl.trajectories(adata, traj, time_key="day", basis="X_umap", n_trajectories=None)
    assert ax.get_xlabel() == "UMAP 1" and ax.get_ylabel() == "UMAP 2"
    expected = tj.tl.embed(adata, traj.X, reach=1.5)
    np.testing.assert_allclose(ax.lines[0].get_xydata(), expected[:, 0], rtol=1e-6)
    # the paths are drawn in UMAP coordinates: they end near the last day's cells there
    late = adata.obsm["X_umap"][adata.obs["day"].to_numpy() == 2.0]
    assert np.linalg.norm(expected[-1].mean(axis=0) - late.mean(axis=0)) < 0.5
    ax.figure.savefig(tmp_path / "umap_trajectories.png")

    ax = tj.pl.velocity_stream(model, adata, 1.0, basis="umap", grid_size=15)
    assert ax.get_xlabel() == "UMAP 1"
    assert any(isinstance(c, LineCollection) for c in ax.collections)
    ax.figure.savefig(tmp_path / "umap_stream.png")
    with pytest.raises(ValueError, match="AnnData"):
        tj.pl.velocity_stream(model, adata.obsm["X_pca"], 1.0, basis="umap")


def test_transition_matrix_follows_the_drift(fitted):
    adata, model = fitted
    T = tj.tl.transition_matrix(adata, model, n_neighbors=20)
    assert sp.issparse(T) and T.shape == (adata.n_obs, adata.n_obs) and T.nnz == 20 * adata.n_obs
    np.testing.assert_allclose(np.asarray(T.sum(axis=1)).ravel(), 1.0)
    assert adata.obsp["tj_transitions"] is T
    settings = adata.uns["tj"]["transitions"]
    Z = adata.obsm["X_pca"].astype(float)
    step = (T @ Z - Z).mean(axis=0) / settings["dt"]  # expected displacement per day
    assert 0.6 < step[0] < 1.2 and np.all(np.abs(step[1:]) < 0.15)


def test_entropic_transitions_include_the_diffusion():
    adata = _genes_with_pca()
    peaks = {}
    for sigma in (1e-3, 0.5):
        model = tj.fit(adata, "day", method="eam", sigma=sigma, key_added="e", **dict(FAST, n_iter=50))
        T = tj.tl.transition_matrix(adata, model, dt=0.5, bandwidth=0.05)
        peaks[sigma] = np.median(T.max(axis=1).toarray())
    # kernel width sqrt(h² + σ² dt): 0.05 (nearly all weight on the nearest cell) against 0.36
    assert peaks[1e-3] > 0.6 and peaks[0.5] < 0.25, peaks


def test_scvelo_reads_the_velocities_without_glue(fitted):
    scv = pytest.importorskip("scvelo")
    adata, _ = fitted
    data = adata.copy()
    for basis in ("pca", "umap"):
        ax = scv.pl.velocity_embedding_stream(data, basis=basis, show=False)
        assert ax is not None
    assert "velocity_graph" not in data.uns and "velocity_graph" not in data.obsp  # nothing recomputed
    np.testing.assert_array_equal(data.obsm["velocity_umap"], adata.obsm["velocity_umap"])


def test_cellrank_kernel_wraps_the_transition_matrix(fitted):
    pytest.importorskip("cellrank")
    adata, model = fitted
    kernel = tj.tl.cellrank_kernel(adata, model, n_neighbors=15)
    assert (kernel.transition_matrix != adata.obsp["tj_transitions"]).nnz == 0
    assert kernel.backward is False
    assert tj.tl.cellrank_kernel(adata).transition_matrix.shape == (adata.n_obs, adata.n_obs)
    with pytest.raises(KeyError, match="transition_matrix"):
        tj.tl.cellrank_kernel(adata, key="other")


def _dyngen_lineages(adata: AnnData) -> pd.Series:
    """Each cell's branch, "0" or "1": each dyngen simulation (``obs["simulation_i"]``) follows one
    branch, the one holding most of its cells of the last time bin (two means in the PCA there)."""
    from sklearn.cluster import KMeans

    last = (adata.obs["time"] == adata.obs["time"].max()).to_numpy()
    tips = KMeans(2, n_init=10, random_state=0).fit_predict(adata.obsm["X_pca"][last])
    branch = pd.crosstab(adata.obs["simulation_i"][last].to_numpy(), tips).idxmax(axis=1)
    assert (pd.crosstab(adata.obs["simulation_i"][last].to_numpy(), tips).min(axis=1) == 0).all()  # one branch per simulation
    return adata.obs["simulation_i"].map(branch).astype(str)


def test_cellrank_gpcca_on_dyngen_finds_both_tips_and_an_undecided_root(shared_data):
    """GPCCA (SciPy's Schur solver, no PETSc/SLEPc) on trajinfer's kernel: the terminal states are the tips of the
    two branches, the cells of the first time bin are undecided between them, those of the last bin committed to
    their own branch's tip, and the initial state comes before both tips."""
    sc = pytest.importorskip("scanpy")
    cr = pytest.importorskip("cellrank")
    adata = tj.datasets.dyngen(shared_data)  # X holds log2(1 + counts): no normalize_total / log1p
    sc.pp.pca(adata, n_comps=10)
    branch = _dyngen_lineages(adata).to_numpy()
    time = adata.obs["time"].to_numpy()
    model = tj.fit(adata, "time_bin", method="eam", **dict(FAST, n_iter=400, hidden_dims=(64, 64), batch_size=256))  # also passes with seeds 1, 2
    cr.settings.verbosity = 0
    estimator = cr.estimators.GPCCA(tj.tl.cellrank_kernel(adata, model))
    assert "tj_transitions" in adata.obsp  # the documented key
    estimator.compute_schur(n_components=6, method="brandts")
    estimator.compute_macrostates(n_states=3)
    estimator.predict_terminal_states(method="top_n", n_states=2)
    estimator.predict_initial_states(n_states=1)
    terminal, initial = estimator.terminal_states, estimator.initial_states
    tip_branch, tip_time = {}, {}
    for tip in terminal.cat.categories:
        cells = (terminal == tip).to_numpy()
        values, counts = np.unique(branch[cells], return_counts=True)
        assert counts.max() >= 0.9 * cells.sum(), f"tip {tip} mixes the branches: {dict(zip(values, counts))}"
        tip_branch[tip], tip_time[tip] = values[counts.argmax()], time[cells].mean()
        assert time[cells].min() >= 1 and time[cells].mean() >= 2  # on a branch (they part in the second bin), none at the root
    assert sorted(tip_branch.values()) == ["0", "1"]  # one tip on each branch
    (root,) = initial.cat.categories
    assert adata.obs["sim_time"][(initial == root).to_numpy()].mean() < min(
        adata.obs["sim_time"][(terminal == tip).to_numpy()].mean() for tip in terminal.cat.categories)

    estimator.compute_fate_probabilities(use_petsc=False, show_progress_bar=False)
    fates = pd.DataFrame(np.asarray(estimator.fate_probabilities), columns=list(estimator.fate_probabilities.names))
    own = np.array([fates[tip].to_numpy() for tip in tip_branch])  # (tips, cells)
    first, last = time == time.min(), time == time.max()
    assert np.all((fates[first].mean() > 0.15) & (fates[first].mean() < 0.85)), fates[first].mean()  # the root is undecided
    for k, tip in enumerate(tip_branch):
        late_on_branch = last & (branch == tip_branch[tip])
        assert own[k, late_on_branch].mean() > 0.8  # the last cells go to their own branch's tip
