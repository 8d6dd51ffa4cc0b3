"""
Embryoid body: a single-cell time course end to end
===================================================

Human embryonic stem cells grown as embryoid bodies differentiate over 27 days (Moon et al.,
2019); cells were sequenced in five windows, days 0–3, 6–9, 12–15, 18–21 and 24–27. This
example follows the NLSB protocol (Table 1 of the Action Matching paper): fit entropic
Action Matching on the training cells in five standardised principal components, push
held-out cells from each time window to the next, compare them with the held-out cells
observed there, and ask where early cells go.

.. note::

   The embryoid-body files (NLSB's ``nlsb_val_rna.npz`` and ``nlsb_test_rna.npz``) are
   looked for in the folder named by the environment variable ``TRAJINFER_SHARED_DATA``,
   then in ``../shared/data``. When they are not there, the same steps run on the synthetic
   petals data as a stand-in, and the text printed below says so.
"""

# %%
# Load the data
# -------------
# :func:`trajinfer.datasets.embryoid_body` reads NLSB's two splits and standardises the 100
# raw PCs on the training cells (``split="val"``, 200 cells per window); the first five
# columns are ``obsm["X_pca"]``. ``obs["day"]`` holds the window labels as an ordered
# categorical; :func:`trajinfer.fit` reads ranges like ``"6-9"`` as their midpoints, so the
# spacing of the windows is preserved.
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

import trajinfer as tj

FAST = os.environ.get("TRAJINFER_DOCS_FAST", "0") == "1"  # small settings in the docs
N_ITER = 2000 if FAST else 6000
N_REPEATS = 5 if FAST else 100  # stochastic simulations per time window
FILES = ("nlsb_val_rna.npz", "nlsb_test_rna.npz")


def find_data() -> Path | None:
    """The folder holding the NLSB embryoid-body splits, if any."""
    here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
    candidates = [
        os.environ.get("TRAJINFER_SHARED_DATA"),
        Path.cwd() / "../shared/data",
        here.parent / "../shared/data",
    ]
    for folder in candidates:
        if folder and all((Path(folder) / name).exists() for name in FILES):
            return Path(folder).resolve()
    return None


data_dir = find_data()
if data_dir is not None:
    adata = tj.datasets.embryoid_body(data_dir, split="both")
    train = adata[adata.obs["split"] == "val"].copy()
    test = adata[adata.obs["split"] == "test"].copy()
    time_key = "day"
    print(f"Embryoid body: {train.n_obs} training and {test.n_obs} held-out cells.")
else:
    train = tj.datasets.petals(n_times=5, n_per_time=200, seed=0)
    test = tj.datasets.petals(n_times=5, n_per_time=350, seed=1)
    time_key = "time"
    print("Embryoid-body files not found: running on the petals data as a stand-in.")
print(train.obs[time_key].value_counts(sort=False))

# %%
# Clusters to read fates against: k-means on the training cells (any clustering works, e.g.
# ``sc.tl.leiden``); the held-out cells get the nearest cluster.


def coords(a):
    """The cells in the representation the model is fitted in."""
    return a.obsm["X_pca"] if "X_pca" in a.obsm else np.asarray(a.X)


kmeans = KMeans(n_clusters=6, n_init=10, random_state=0).fit(coords(train))
names = np.array([f"C{c + 1}" for c in range(kmeans.n_clusters)])
train.obs["cluster"] = pd.Categorical(names[kmeans.labels_])
test.obs["cluster"] = pd.Categorical(names[kmeans.predict(coords(test))])

# %%
# Fit entropic Action Matching
# ----------------------------
# ``sigma="auto"`` (the default) picks the diffusion coefficient from the spread of the
# snapshots (:func:`trajinfer.tl.default_sigma`). The fitted model records the time mapping
# and the representation (:func:`trajinfer.tl.fit_record`); the training AnnData gets each
# cell's velocity at its own time.
model = tj.fit(
    train, time_key=time_key, method="eam",
    n_iter=N_ITER, hidden_dims=(64, 64), lr=5e-3, progress=False,
)
record = tj.tl.fit_record(model)
labels = record.time_labels
print(f"{model.n_iter_} iterations in {model.fit_time_:.1f} s, sigma = {model.sigma:.3g}")
print("time mapping:", dict(zip(labels, record.time_values)))
print("velocities:", train.obsm["tj_velocity"].shape)
tj.pl.loss(model)

# %%
# Push held-out cells one window ahead
# ------------------------------------
# For each window :math:`k`, the held-out cells of window :math:`k-1` are simulated to window
# :math:`k` (:func:`trajinfer.tl.push`, several stochastic repeats) and compared with the
# held-out cells observed there by W1, the earth mover's distance with Euclidean ground cost;
# the published tables call this number "W2" (see :ref:`w1-vs-w2`). The floor is the
# distance between training and held-out cells of the same window: no model trained on 200
# cells per window can do much better.
test_X, train_X = coords(test), coords(train)

rows = []
for k in range(1, len(labels)):
    target = test_X[tj.tl.cells_at(test, record, labels[k])]
    pushed = [tj.tl.push(test, model, labels[k - 1], labels[k], seed=r)
              for r in range(N_REPEATS)]
    w1 = [tj.metrics.w1(p.X, target) for p in pushed]
    floor = tj.metrics.w1(train_X[tj.tl.cells_at(train, record, labels[k])], target)
    rows.append({"from": labels[k - 1], "to": labels[k],
                 "W1 mean": np.mean(w1), "W1 std": np.std(w1), "floor": floor})
table = pd.DataFrame(rows)
table["ratio to floor"] = table["W1 mean"] / table["floor"]
if data_dir is not None:
    table["published eAM"] = [0.58, 0.77, 0.72, 0.74]  # ~2,700 training cells/window
table.round(3)

# %%
# Simulate the first window to the last
# -------------------------------------
# :func:`trajinfer.tl.simulate` returns :class:`~trajinfer.Trajectories`; the plot shows the
# snapshots in the first two components with fifty simulated paths on top.
traj = tj.tl.simulate(test, model, from_time=labels[0], to_time=labels[-1], seed=0)
print(traj)
fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.5), layout="constrained")
tj.pl.trajectories(test, traj, model=model, ax=axes[0])
axes[0].set_title("held-out cells and simulated paths")
tj.pl.velocity_stream(model, train, t=labels[2], ax=axes[1])
axes[1].set_title(f"learned drift at {time_key} {labels[2]}")

# %%
# Per-component densities of the simulated last window against the observed one.
n_show = min(4, test_X.shape[1])
tj.pl.marginals(test_X[tj.tl.cells_at(test, record, labels[-1])], traj.X[-1], components=range(n_show))

# %%
# Where do early cells go?
# ------------------------
# :func:`trajinfer.tl.fate` pushes the cells of an early window to a later one and gives
# each the cluster distribution of its nearest observed cells there. ``transition``
# averages that over the early cells of each cluster: row = cluster at the early window,
# column = cluster at the late window, rows sum to one.
fates = tj.tl.fate(train, model, labels[1], labels[-1], cluster_key="cluster",
                   n_repeats=3)
fates.transition.round(2)

# %%
matrix = fates.transition
fig, ax = plt.subplots(figsize=(5.5, 4.2), layout="constrained")
image = ax.imshow(matrix.to_numpy(), cmap="Blues", vmin=0, vmax=1)
ax.set_xticks(range(matrix.shape[1]), matrix.columns)
ax.set_yticks(range(matrix.shape[0]), matrix.index)
ax.set(xlabel=matrix.columns.name, ylabel=matrix.index.name, title="fate transitions")
for (i, j), value in np.ndenumerate(matrix.to_numpy()):
    color = "w" if value > 0.5 else "k"
    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
fig.colorbar(image, ax=ax, label="probability")

# %%
# Save and reload
# ---------------
# A saved model holds tensors and plain values only (no AnnData) and loads on any device.
with tempfile.TemporaryDirectory() as folder:
    model.save(Path(folder) / "eb_model.pt")
    reloaded = tj.load(Path(folder) / "eb_model.pt")
x, t = train_X[:5], record.time_values[1]
same = np.allclose(model.velocity(x, t), reloaded.velocity(x, t))
print("same velocities after reload:", same)

# sphinx_gallery_thumbnail_number = 2
