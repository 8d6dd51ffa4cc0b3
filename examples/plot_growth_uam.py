"""
Growth and death with unbalanced Action Matching
================================================

A population lives in two places on a line, around :math:`x = -1.5` and :math:`x = +1.5`.
Between day 0 and day 4 the right-hand group quadruples while the left-hand group stays
the same size. Nobody moves: the snapshots change only because one group proliferates.

Balanced Action Matching (``method="am"``) only knows transport. It sees normalised
snapshots in which the right group's share rises from 20% to 50%, and the only way it can
explain that is by moving individuals across the empty gap. Unbalanced Action Matching
(``method="uam"``) also gives each particle a weight with :math:`d\\log w/dt = s_t(x)`: it
can explain the same snapshots by growth, and it recovers the growth rate of each group
(here :math:`\\log 4 / 4 \\approx 0.35` per day on the right and 0 on the left).
"""

# %%
# Snapshots of a growing population
# ---------------------------------
# Five daily snapshots of 400 individuals each. The sample at each time is drawn from the
# *normalised* population, as in a single-cell experiment (the number of cells sequenced
# says nothing about the size of the tissue). The total size of the population at each
# time, known separately (e.g. from cell counts), is passed as ``masses``.
import os

import matplotlib.pyplot as plt
import numpy as np

import trajinfer as tj

FAST = os.environ.get("TRAJINFER_DOCS_FAST", "0") == "1"  # small settings in the docs
N_ITER = 2000 if FAST else 5000

rng = np.random.default_rng(0)
days = np.arange(5.0)
left_mass = np.ones_like(days)
right_mass = 0.25 * 4.0 ** (days / 4)  # 0.25 -> 1.0: the right group quadruples
masses = left_mass + right_mass
centres, spread = np.array([-1.5, 1.5]), 0.35


def snapshot(day_index: int, n: int = 400) -> np.ndarray:
    """Samples of the normalised population on one day, shape (n, 1)."""
    p_right = right_mass[day_index] / masses[day_index]
    mode = (rng.random(n) < p_right).astype(int)
    return (centres[mode] + spread * rng.standard_normal(n))[:, None]


snapshots = [snapshot(k) for k in range(len(days))]
print("population size per day:", np.round(masses, 2))
print("share of the right group:", np.round(right_mass / masses, 2))

# %%
# Fit balanced and unbalanced Action Matching
# -------------------------------------------
# uAM gets the snapshot-mixture path with the population sizes as ``masses`` (only the
# unbalanced objective uses them: it weights each time by the population size). AM cannot
# use growth, so it has to carry the extra individuals across the gap; on the mixture path
# that would mean teleporting mass over a region where nobody is observed (see
# :doc:`/theory`), so it gets the optimal-transport path, which moves the excess along
# straight lines.
common = dict(hidden_dims=(64, 64), lr=2e-3, seed=0, run={"progress": False})
uam = tj.ActionMatching(method="uam", n_iter=N_ITER, batch_size=256, **common)
uam.fit(tj.SnapshotPath(snapshots, days, masses=masses))
am = tj.ActionMatching(method="am", n_iter=N_ITER // 2, batch_size=128, **common)
am.fit(tj.SnapshotPath(snapshots, days, interpolation="ot"))
print(f"uAM fitted in {uam.fit_time_:.1f} s, AM in {am.fit_time_:.1f} s")

# %%
# The learned growth rate
# -----------------------
# For uAM the action is also the growth rate: :meth:`~trajinfer.ActionMatching.growth`
# returns :math:`g_t(x) = s_t(x)` per day. Where the individuals are, it should be flat at
# about 0.35 on the right and about 0 on the left; in the empty gap (shaded) the model is
# free to do anything.
x = np.linspace(-3, 3, 301)[:, None]
fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
for day in (0.5, 2.0, 3.5):
    ax.plot(x[:, 0], uam.growth(x, day), label=f"day {day:g}")
ax.axhline(np.log(4) / 4, color="k", ls="--", lw=1, label="true rate, right group")
ax.axhline(0.0, color="k", ls=":", lw=1, label="true rate, left group")
ax.axvspan(-0.5, 0.5, color="0.9", zorder=0)
ax.set(xlabel="x", ylabel="growth rate per day", ylim=(-1, 1.5))
ax.set_title("uAM: growth rate $g_t(x) = s_t(x)$")
ax.legend(fontsize=8, ncols=2)

# %%
# Simulate: weights versus transport
# ----------------------------------
# Start 2,000 individuals from the day-0 population and run both models to day 4. The uAM
# particles barely move but their weights change; the AM particles must cross the gap.
x0 = snapshot(0, 2000)
traj_u = uam.simulate(x0, 0, 4, n_steps=80)
traj_a = am.simulate(x0, 0, 4, n_steps=80)

fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), sharey=True, layout="constrained")
show = rng.choice(len(x0), 60, replace=False)
for i in show:
    axes[0].plot(traj_a.times, traj_a.X[:, i, 0], color="C0", lw=0.8)
log_w = traj_u.log_weights[-1, show]
norm = plt.Normalize(-abs(log_w).max(), abs(log_w).max())
for i, color in zip(show, plt.cm.coolwarm(norm(log_w))):
    axes[1].plot(traj_u.times, traj_u.X[:, i, 0], color=color, lw=0.8)
axes[0].set(title="AM: transport only", xlabel="day", ylabel="x")
axes[1].set(title="uAM: transport + growth (red: weight grew)", xlabel="day")

# %%
# Do the simulated populations match the snapshots?
# -------------------------------------------------
# Histograms of held-out samples of each day (grey) against the simulated particles. The
# top row is the *population* density: observed samples carry the population size of their
# day, uAM particles their weights times the simulated population size
# (:attr:`~trajinfer.Trajectories.relative_mass` times the day-0 size). The bottom row
# compares AM with the normalised snapshots.
bins = np.linspace(-3, 3, 41)
bin_width = bins[1] - bins[0]
fig, axes = plt.subplots(
    2, len(days), figsize=(11, 4.2), sharex=True, sharey="row", layout="constrained"
)
for k, day in enumerate(days):
    observed = snapshot(k, 2000)[:, 0]
    step = int(np.argmin(np.abs(traj_u.times - day)))
    size_u = traj_u.relative_mass[step] * masses[0]
    top, bottom = axes[0, k], axes[1, k]
    weight_obs = np.full(len(observed), masses[k] / len(observed) / bin_width)
    weight_u = traj_u.weights[step] * size_u / bin_width
    top.hist(observed, bins, weights=weight_obs, color="0.75", label="observed")
    top.hist(traj_u.X[step, :, 0], bins, weights=weight_u,
             histtype="step", lw=1.5, color="C3", label="uAM")
    top.set_title(f"day {day:g}: size {masses[k]:.2f} (uAM {size_u:.2f})", fontsize=8)
    bottom.hist(observed, bins, density=True, color="0.75", label="observed")
    bottom.hist(traj_a.at(day)[0][:, 0], bins, density=True,
                histtype="step", lw=1.5, color="C0", label="AM")
    bottom.set_xlabel("x")
axes[0, 0].set_ylabel("uAM: population\ndensity")
axes[1, 0].set_ylabel("AM: normalised\ndensity")
axes[0, -1].legend(fontsize=7)
axes[1, -1].legend(fontsize=7)

# %%
# The uAM population size follows the true one and its left group stays put; its right
# group comes out narrower than observed because, with this short fit, the learned growth
# rate peaks at the centre of the group (see the first figure).
#
# In numbers: the weighted W1 distance between simulated and held-out samples at day 4,
# and the fraction of particles that ended on the other side of the gap. For AM that
# fraction should be 30%, the rise of the right group's share from 20% to 50%.
held_out = snapshot(4, 2000)
X_u, w_u = traj_u.at(4)
X_a, _ = traj_a.at(4)


def crossed(traj):
    """Fraction of particles that end on the other side of x = 0."""
    return np.mean(np.sign(traj.X[-1, :, 0]) != np.sign(traj.X[0, :, 0]))


print(f"W1 at day 4: uAM {tj.metrics.w1(X_u, held_out, wa=w_u):.3f}, "
      f"AM {tj.metrics.w1(X_a, held_out):.3f}")
print(f"crossed the gap: uAM {crossed(traj_u):.1%}, AM {crossed(traj_a):.1%}")
print(f"population size at day 4: true {masses[-1] / masses[0]:.2f}x, "
      f"uAM {traj_u.relative_mass[-1]:.2f}x")

# %%
# Both models reproduce the normalised snapshots, but they tell different stories: AM
# invents migration across a region where nobody is ever observed, uAM finds proliferation
# (and also tracks the population size). Which story is right is a modelling decision the
# snapshots alone cannot make; cell counts (``masses``) and biology (is migration between
# these states possible?) decide. See :ref:`choosing` in the theory page.

# sphinx_gallery_thumbnail_number = 2
