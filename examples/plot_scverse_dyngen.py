"""
scanpy, scvelo and CellRank on trajinfer's dynamics
===================================================

A time course goes through the usual scanpy steps (PCA, neighbours, UMAP, Leiden clusters),
:func:`trajinfer.fit` learns the dynamics in the PCA, and the result is used by the scverse
tools with no glue code: scvelo draws the velocity streams, CellRank's GPCCA estimator finds
the macrostates of trajinfer's transition matrix, :func:`trajinfer.tl.pull` traces the last
cells back to their ancestors, and :func:`trajinfer.tl.gene_trends` follows the genes that
drive each branch along simulated trajectories.

The data are MIOFlow's dyngen simulation of a bifurcating differentiation (1000 cells, 135
genes): one root population splits into two branches. The simulation time of each cell is
binned into five windows, which play the role of collection days.

.. note::

   The dyngen files (``mioflow_dyngen_expression_bif.csv`` and
   ``mioflow_dyngen_cell_info.csv``) are looked for in the folder named by
   ``TRAJINFER_SHARED_DATA``, then in ``../shared/data``; without them a small synthetic
   bifurcation stands in. scvelo and CellRank are optional (see :doc:`/install`): without
   them the trajinfer plots and the transition matrix itself are shown instead.
"""

# %%
# Load and preprocess with scanpy
# -------------------------------
# ``obs["time_bin"]`` holds the windows as ranges of simulation time (``"0-200"``,
# ``"200-400"``, ...); :func:`trajinfer.fit` reads each range as its midpoint, so the
# spacing is kept. The dyngen files store ``log2(1 + counts)``, so ``X`` is ready for the PCA:
# normalising and log-transforming it again would log it twice (the loader records
# ``uns["log1p"]``, and scanpy's ``log1p`` warns). Leiden clustering needs ``igraph`` and
# ``leidenalg`` (``pip install "trajinfer[scanpy]"``).
import importlib.util
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData

import trajinfer as tj

FAST = os.environ.get("TRAJINFER_DOCS_FAST", "0") == "1"  # small settings in the docs
N_ITER = 2000 if FAST else 5000
FILES = ("mioflow_dyngen_expression_bif.csv", "mioflow_dyngen_cell_info.csv")
HAS_SCVELO = importlib.util.find_spec("scvelo") is not None
HAS_CELLRANK = importlib.util.find_spec("cellrank") is not None


def find_data() -> Path | None:
    """The folder holding the dyngen files, if any."""
    here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
    for folder in (os.environ.get("TRAJINFER_SHARED_DATA"), Path.cwd() / "../shared/data", here.parent / "../shared/data"):
        if folder and all((Path(folder) / name).exists() for name in FILES):
            return Path(folder).resolve()
    return None


def synthetic_bifurcation(n_cells: int = 1000, n_genes: int = 60, seed: int = 0) -> AnnData:
    """Counts of a root that splits into two branches, binned like the dyngen data."""
    rng = np.random.default_rng(seed)
    progress = rng.uniform(0.0, 1.0, n_cells)
    branch = rng.choice([-1.0, 1.0], n_cells)
    latent = np.column_stack([progress, branch * np.clip(progress - 0.4, 0.0, None)])
    latent += 0.03 * rng.standard_normal(latent.shape)
    counts = rng.poisson(np.exp(1.0 + latent @ rng.normal(scale=2.0, size=(2, n_genes))))
    edges = np.linspace(0, 1000, 6)
    obs = pd.DataFrame({"sim_time": 1000 * progress}, index=[f"cell{i}" for i in range(n_cells)])
    obs["time_bin"] = pd.cut(obs["sim_time"], edges, labels=[f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])], include_lowest=True)
    return AnnData(counts.astype(np.float32), obs=obs)


data_dir = find_data()
if data_dir is not None:
    adata = tj.datasets.dyngen(data_dir)
    print(f"dyngen: {adata.n_obs} cells, {adata.n_vars} genes.")
else:
    adata = synthetic_bifurcation()
    print("dyngen files not found: running on a synthetic bifurcation as a stand-in.")
print(adata.obs["time_bin"].value_counts(sort=False))

if "log1p" not in adata.uns:  # the synthetic stand-in holds counts
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
sc.pp.pca(adata, n_comps=10)
sc.pp.neighbors(adata, n_neighbors=30)
sc.tl.umap(adata, random_state=0)
sc.tl.leiden(adata, resolution=0.5, random_state=0, flavor="igraph", n_iterations=2, directed=False)

# %%
# Fit the dynamics
# ----------------
# Entropic Action Matching in the 10 PCs. Besides ``obsm["tj_velocity"]`` the fit writes the
# velocities where scvelo and CellRank look for them: ``obsm["velocity_pca"]``, their
# projection onto the UMAP ``obsm["velocity_umap"]`` (the displacement of a kNN regression
# from the PCA onto the UMAP coordinates along each velocity), and the gene-space velocity
# ``layers["velocity"]`` (velocities times the PCA loadings).
model = tj.fit(adata, "time_bin", method="eam", n_iter=N_ITER, hidden_dims=(64, 64, 64), progress=False)
record = tj.tl.fit_record(model)  # what tj.fit recorded: time key, label -> time, representation
print("time mapping:", dict(zip(record.time_labels, record.time_values)))
print("written:", list(adata.uns["velocity_params"]["written"]))
adata  # noqa: B018  (the gallery shows the last expression)

# %%
# Velocity streams
# ----------------
# With scvelo installed, its stream plot reads ``obsm["velocity_umap"]`` and
# ``obsm["velocity_pca"]`` directly; nothing is recomputed. The trajinfer plots on the right
# draw simulated paths and the learned field at one time on the same UMAP: simulated states
# are mapped onto it by the same kNN regression (:func:`trajinfer.tl.embed`). A UMAP has no
# place for states away from the data: where a simulated path leaves the cells (here, the
# few that cut through the empty space between the branches in the PCA), its line breaks.
labels = list(record.time_labels)
quiet = "No data for colormapping"  # scvelo's background scatter warns about its own call
fig, axes = plt.subplots(2, 2, figsize=(11, 9), layout="constrained")
if HAS_SCVELO:
    import scvelo as scv

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=quiet)
        scv.pl.velocity_embedding_stream(adata, basis="umap", color="leiden", ax=axes[0, 0], show=False, title="scvelo stream, UMAP")
        scv.pl.velocity_embedding_stream(adata, basis="pca", color="sim_time", ax=axes[0, 1], show=False, title="scvelo stream, PCA")
else:
    sc.pl.umap(adata, color="leiden", ax=axes[0, 0], show=False, title="Leiden clusters (scvelo not installed)")
    tj.pl.velocity_stream(model, adata, t=labels[2], ax=axes[0, 1])
traj = tj.tl.simulate(adata, model, from_time=labels[0], to_time=labels[-1], seed=0)
tj.pl.trajectories(adata, traj, time_key="time_bin", basis="X_umap", n_trajectories=40, ax=axes[1, 0])
tj.pl.velocity_stream(model, adata, t=labels[1], basis="X_umap", ax=axes[1, 1])
axes[1, 1].set_title(f"learned velocity at {labels[1]}, on the UMAP")

# %%
# A transition matrix and CellRank macrostates
# --------------------------------------------
# :func:`trajinfer.tl.transition_matrix` pushes each cell a short time along the learned
# dynamics and spreads it over its 30 nearest observed cells with a Gaussian kernel (widened
# by the diffusion of eAM): a row-stochastic sparse matrix in ``obsp["tj_transitions"]``.
# Summed over Leiden clusters it already shows the flow; :func:`trajinfer.tl.cellrank_kernel`
# hands it to CellRank, whose GPCCA estimator groups the cells into macrostates and marks
# which are initial and which terminal.
T = tj.tl.transition_matrix(adata, model)
print(f"transition matrix {T.shape}, {T.nnz} entries; settings {adata.uns['tj']['transitions']}")
clusters = pd.get_dummies(adata.obs["leiden"]).to_numpy(dtype=float)
flow = pd.DataFrame(clusters.T @ (T @ clusters), index=adata.obs["leiden"].cat.categories, columns=adata.obs["leiden"].cat.categories)
flow = flow.div(flow.sum(axis=1), axis=0).rename_axis(index="from cluster", columns="to cluster")
flow.round(2)

# %%
if HAS_CELLRANK:
    import cellrank as cr

    cr.settings.verbosity = 0  # without PETSc CellRank notes that it uses SciPy's dense Schur solver
    gpcca = cr.estimators.GPCCA(tj.tl.cellrank_kernel(adata))
    gpcca.compute_schur(n_components=6, method="brandts")
    gpcca.compute_macrostates(n_states=3, cluster_key="leiden")
    gpcca.predict_terminal_states(method="top_n", n_states=2)  # the two most stable: the tips
    gpcca.predict_initial_states(n_states=1)
    print("initial:", *gpcca.initial_states.cat.categories, "| terminal:", *gpcca.terminal_states.cat.categories)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=quiet)
        gpcca.plot_macrostates(which="all", basis="umap", ax=axes[0], show=False, title="CellRank macrostates")
    sc.pl.umap(adata, color="sim_time", ax=axes[1], show=False, title="simulation time")
else:
    fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    image = ax.imshow(flow.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(flow)), flow.columns)
    ax.set_yticks(range(len(flow)), flow.index)
    ax.set(xlabel="to cluster", ylabel="from cluster", title="Cluster transitions (CellRank not installed)")
    fig.colorbar(image, ax=ax, label="probability")

# %%
# Where the last cells come from
# ------------------------------
# :func:`trajinfer.tl.pull` traces the cells of the last window back to the middle one. eAM cannot
# integrate its SDE backward (that needs the score of the marginals), so the forward
# transitions are reversed with Bayes' rule: each early cell is simulated forward and a late
# cell's ancestors are the early cells whose simulated descendants land nearest to it. Rows:
# Leiden clusters of the last window; columns: the clusters their ancestors were in. Each tip
# descends from its own branch.
ancestry = tj.tl.pull(adata, model, labels[-1], labels[2], cluster_key="leiden", n_repeats=5 if FAST else 20)
ancestry.transition.round(2)

# %%
# Genes along the trajectories, per fate
# --------------------------------------
# :func:`trajinfer.tl.fate` pushes the cells of the second window to the last one and reads off
# the Leiden cluster each lands in; :func:`trajinfer.tl.fate_drivers` correlates every gene's
# expression with each fate's probability over those cells: the drivers of a fate are the genes
# most correlated with it. :func:`trajinfer.tl.gene_trends` then simulates the first window's cells
# to the last and follows the expression of the top drivers along the paths, grouped by the
# cluster each simulated cell ends in: the mean over the cells of a fate (line) and their 10%-90%
# range (band), in the data's time units. Expression at a simulated state is the kernel-weighted
# mean over its nearest observed cells in the PCA (``decoder="knn"``), so it stays within what
# was measured.
fates = tj.tl.fate(adata, model, from_time=labels[1], to_time=labels[-1], cluster_key="leiden")
main_fates = fates.probabilities.mean().nlargest(2).index.tolist()  # the two tips, by their share of the cells
drivers = tj.tl.fate_drivers(adata, fates)
top = {fate: drivers[fate].nlargest(2).index.tolist() for fate in main_fates}
print("drivers:", {fate: [f"{gene} ({drivers.loc[gene, fate]:.2f})" for gene in genes] for fate, genes in top.items()})
trends = tj.tl.gene_trends(adata, model, [gene for genes in top.values() for gene in genes], cluster_key="leiden", seed=0)
fig = tj.pl.gene_trends(trends, fates=main_fates, ncols=4)
fig.suptitle("Top drivers of each tip along simulated trajectories")
drivers.loc[[gene for genes in top.values() for gene in genes], main_fates].round(2)
