"""
Petals: comparing models across time points
===========================================

The petals data (after MIOFlow's synthetic benchmark) is a population that starts at the
origin, splits into eight branches moving outward along the edges of four diamond-shaped
petals, and merges again in pairs at the petal tips. Five snapshots of 300 cells each, with no
cell followed across time.

We fit three models on one sample of the time course, simulate the first snapshot of an
independent sample forward, and compare the simulation with the held-out cells at every later
time point:

- entropic Action Matching on the snapshot-mixture path (``method="eam"``, the default of
  :func:`trajinfer.fit`);
- deterministic Action Matching on the same path (``method="am"``);
- deterministic Action Matching on the optimal-transport interpolant
  (``method="am", interpolation="ot"``).

The comparison is read against the *finite-sample floor*: the distance between the training
and held-out cells of the same time point, which no model can beat on average.
"""

# %%
# Data
# ----
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import trajinfer as tj

FAST = os.environ.get("TRAJINFER_DOCS_FAST", "0") == "1"  # small settings in the docs
N_ITER = 1500 if FAST else 5000

train = tj.datasets.petals(n_times=5, n_per_time=300, seed=0)
held_out = tj.datasets.petals(n_times=5, n_per_time=300, seed=1)
times = np.sort(train.obs["time"].unique())
print(train)

fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
sc = ax.scatter(*train.X.T, c=train.obs["time"], s=6, cmap="viridis")
fig.colorbar(sc, ax=ax, label="time")
ax.set(aspect="equal", title="petals: five snapshots")

# %%
# Fit three models
# ----------------
# The same small network and budget for all. :func:`trajinfer.fit` writes each cell's
# velocity into ``obsm[key_added + "_velocity"]`` and the fit's record into
# ``uns[key_added]``. The OT path solves an optimal-transport problem per minibatch, so it
# gets smaller batches and fewer iterations to keep the same cost.
settings = dict(time_key="time", hidden_dims=(64, 64), lr=5e-3, progress=False, seed=0)
models = {
    "eAM, mixture": tj.fit(train, method="eam", n_iter=N_ITER, **settings),
    "AM, mixture": tj.fit(train, method="am", n_iter=N_ITER, key_added="tj_am",
                          **settings),
    "AM, OT path": tj.fit(
        train, method="am", interpolation="ot", n_iter=2 * N_ITER // 3, batch_size=128,
        key_added="tj_am_ot", **settings,
    ),
}
for name, model in models.items():
    print(f"{name}: {model.n_iter_} iterations in {model.fit_time_:.1f} s")

# %%
# Simulate held-out cells from the first time point
# -------------------------------------------------
# The stochastic model is simulated five times with different seeds; W1 is the earth
# mover's distance with Euclidean ground cost (:func:`trajinfer.metrics.w1`).
start = held_out.X[held_out.obs["time"] == times[0]]
observed = {t: held_out.X[held_out.obs["time"] == t] for t in times}
floor = {t: tj.metrics.w1(train.X[train.obs["time"] == t], observed[t])
         for t in times[1:]}

rows, trajectories = [], {}
for name, model in models.items():
    repeats = 5 if model.method == "eam" else 1
    runs = [model.simulate(start, times[0], times[-1], n_steps=80, seed=r)
            for r in range(repeats)]
    trajectories[name] = runs[0]
    for t in times[1:]:
        w1 = [tj.metrics.w1(run.at(t)[0], observed[t]) for run in runs]
        rows.append({"model": name, "time": t, "W1": np.mean(w1), "floor": floor[t]})
for t in times[1:]:
    w1 = tj.metrics.w1(start, observed[t])
    rows.append({"model": "no motion", "time": t, "W1": w1, "floor": floor[t]})
table = pd.DataFrame(rows)
table["W1 / floor"] = table["W1"] / table["floor"]
table.pivot(index="model", columns="time", values="W1").round(3)

# %%
# The same as a figure: W1 at every time point for each model, the floor and the do-nothing
# baseline (the start cells left where they are).
fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
for name, group in table.groupby("model", sort=False):
    ax.plot(group["time"], group["W1"], "o-", label=name)
ax.plot(times[1:], [floor[t] for t in times[1:]], "k--", label="finite-sample floor")
ax.set(xlabel="time", ylabel="W1 to held-out cells", yscale="log")
ax.set_title("Error across time points")
ax.legend(fontsize=8)

# %%
# Simulated against observed cells
# --------------------------------
# Rows: models; columns: time points. Grey: held-out cells; colour: simulated cells.
fig, axes = plt.subplots(
    len(models), len(times) - 1, figsize=(10, 7.8), sharex=True, sharey=True,
    layout="constrained",
)
for i, (name, traj) in enumerate(trajectories.items()):
    for j, t in enumerate(times[1:]):
        ax = axes[i, j]
        ax.scatter(*observed[t].T, s=4, color="0.75")
        ax.scatter(*traj.at(t)[0].T, s=4, color=f"C{i}")
        ax.set(aspect="equal", xticks=[], yticks=[])
        if i == 0:
            ax.set_title(f"t = {t:g}")
    axes[i, 0].set_ylabel(name)

# %%
# Trajectories and the learned velocity field
# -------------------------------------------
# :func:`trajinfer.pl.trajectories` draws simulated paths over the snapshots and
# :func:`trajinfer.pl.velocity_stream` the streamlines of the fitted drift at one time.
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
tj.pl.trajectories(train, trajectories["eAM, mixture"], time_key="time", ax=axes[0])
axes[0].set_title("eAM: 50 simulated paths")
tj.pl.velocity_stream(models["eAM, mixture"], train, t=2.0, ax=axes[1])
axes[1].set_title("eAM drift at t = 2")

# %%
# Reading the results: the models on the mixture path follow the branches out of the
# origin and stay close to the floor; errors accumulate with the time since the start.
#
# The OT path does worse here because of its minibatches: each batch of 128 samples is
# split over the four pairs of consecutive snapshots, so about 32 cells of one snapshot are
# paired with 32 of the next, a poor estimate of the optimal coupling when the cells are
# spread over eight branches. Pairs then cross between branches and the path the model is
# asked to follow is blurred. With ``batch_size=1024`` (about 256 cells per pair) the same
# model reached W1 = 0.08, 0.15, 0.15, 0.18 at t = 1..4 in our runs, close to the mixture
# path, but each iteration then solves four 256 × 256 transport problems and the fit took
# about ten times longer. See :doc:`/theory` for when to prefer which path. The
# :doc:`benchmark page </generated/benchmarks/petals>` compares with MIOFlow.

# sphinx_gallery_thumbnail_number = 4
