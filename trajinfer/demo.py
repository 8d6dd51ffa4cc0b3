"""The main job: fit entropic Action Matching on a branching time course and test it on held-out cells.

:func:`run_demo` builds the synthetic petals time course (five snapshots of cells moving out
from the origin along eight edges that branch and merge), fits eAM on a random half of the
cells of every time point, pushes the first time point's fitted cells forward with the SDE,
and compares the simulated population at every later time with the other half of the cells
(W1, earth mover's distance with Euclidean cost). Two reference numbers put the W1 in scale:
the no-move baseline (the start cells left where they are) and the finite-sample floor (W1
between the two halves of the observed cells, which no model can beat on average).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from . import _defaults as defaults
from . import metrics, pl
from .datasets import petals
from .tl import fit

logger = logging.getLogger(__name__)

__all__ = ["format_table", "run_demo"]

N_TIMES = 5
# the full demo fits with tj.fit's own defaults, as a user would
DEFAULT = {"n_per_time": 400, "n_iter": "auto", "hidden_dims": "auto", "batch_size": defaults.BATCH_SIZE,
           "n_repeats": 5, "n_steps": 100}
QUICK = {"n_per_time": 200, "n_iter": 400, "hidden_dims": (64, 64), "batch_size": 128, "n_repeats": 3, "n_steps": 40}


def run_demo(out_dir: str | Path = "trajinfer_demo", n_iter: int | None = None, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Fit eAM on half of a petals time course and evaluate it on the other half.

    Parameters
    ----------
    out_dir
        Folder for ``demo.png`` (snapshots with simulated trajectories, per-time W1 bars) and
        ``results.json``; created if missing.
    n_iter
        Training iterations (default: those of :func:`trajinfer.fit` on snapshots,
        ``n_iter="auto"``, which is 1500; 400 with ``quick``).
    quick
        A smaller data set, network and budget: a few seconds on one CPU core instead of
        under a minute.
    seed
        Seed of the data, the held-out split, the fit and the simulations.

    Returns
    -------
    dict
        ``rows``: one dict per later time with ``time``, ``w1_model`` (mean over stochastic
        repeats), ``w1_model_std``, ``w1_no_move`` and ``w1_floor``; ``settings`` (with the
        iterations and layer widths the fit used); ``sigma``; ``fit_seconds``; ``figure`` and
        ``json`` (paths of the saved files).
    """
    settings = dict(QUICK if quick else DEFAULT)
    if n_iter is not None:
        settings["n_iter"] = int(n_iter)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    adata = petals(n_times=N_TIMES, n_per_time=settings["n_per_time"], seed=seed)
    rng = np.random.default_rng(seed)
    times = adata.obs["time"].to_numpy()
    held_in = np.zeros(adata.n_obs, dtype=bool)
    for label in np.unique(times):
        rows = np.flatnonzero(times == label)
        held_in[rng.choice(rows, size=len(rows) // 2, replace=False)] = True
    train, test = adata[held_in].copy(), adata[~held_in].copy()
    X_train, X_test = np.asarray(train.X, dtype=float), np.asarray(test.X, dtype=float)
    t_train, t_test = train.obs["time"].to_numpy(), test.obs["time"].to_numpy()
    labels = np.unique(times)
    start = X_train[t_train == labels[0]]
    logger.info("Petals: %d time points, %d fitted and %d held-out cells.", N_TIMES, train.n_obs, test.n_obs)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 2-D problem with a small network: extra threads only add overhead
    try:
        model = fit(
            train, "time", method="eam", n_iter=settings["n_iter"], hidden_dims=settings["hidden_dims"],
            batch_size=settings["batch_size"], device="cpu", seed=seed, progress=False,
        )
        runs = [
            model.simulate(start, labels[0], labels[-1], n_steps=settings["n_steps"], seed=seed + repeat)
            for repeat in range(settings["n_repeats"])
        ]
    finally:
        torch.set_num_threads(threads)

    rows = []
    for label in labels[1:]:
        target = X_test[t_test == label]
        scores = [metrics.w1(run.at(label)[0], target) for run in runs]
        rows.append({
            "time": float(label),
            "w1_model": float(np.mean(scores)),
            "w1_model_std": float(np.std(scores)),
            "w1_no_move": metrics.w1(start, target),
            "w1_floor": metrics.w1(X_train[t_train == label], target),
        })

    figure_path, json_path = out / "demo.png", out / "results.json"
    _figure(test, runs[0], rows, len(runs), seed).savefig(figure_path, dpi=150)
    results = {
        "rows": rows,
        "settings": {
            **settings, "n_iter": int(model.n_iter_), "hidden_dims": [int(width) for width in model.hidden_dims_],
            "n_times": N_TIMES, "seed": seed, "quick": quick,
        },
        "sigma": float(model.sigma),
        "fit_seconds": float(model.fit_time_),
        "figure": str(figure_path),
        "json": str(json_path),
    }
    json_path.write_text(json.dumps(results, indent=2))
    logger.info("Saved %s and %s.", figure_path, json_path)
    return results


def format_table(results: dict[str, Any]) -> str:
    """The per-time table of :func:`run_demo`'s results as aligned text."""
    header = f"{'time':>6}  {'W1 model':>16}  {'W1 no-move':>10}  {'W1 floor':>8}"
    lines = [header, "-" * len(header)]
    for row in results["rows"]:
        model = f"{row['w1_model']:.3f} ± {row['w1_model_std']:.3f}"
        lines.append(f"{row['time']:>6g}  {model:>16}  {row['w1_no_move']:>10.3f}  {row['w1_floor']:>8.3f}")
    return "\n".join(lines)


def _figure(test: Any, run: Any, rows: list[dict[str, float]], n_repeats: int, seed: int) -> Figure:
    """Held-out snapshots with simulated trajectories, and W1 per time against the references."""
    fig = Figure(figsize=(11.5, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1.15, 1.0))
    pl.trajectories(test, run, time_key="time", n_trajectories=60, seed=seed, ax=left)
    left.set_title("Held-out cells and simulated eAM trajectories from t = 0")
    left.set_aspect("equal")
    fig.suptitle("trajinfer demo: entropic Action Matching on the petals time course, fitted on half of the cells")

    times = np.array([row["time"] for row in rows])
    width = 0.26
    bars = (
        (f"eAM, pushed from t = {run.times[0]:g} (mean ± sd, {n_repeats} runs)", "w1_model", "C0"),
        (f"no move (cells left at t = {run.times[0]:g})", "w1_no_move", "0.6"),
        ("floor: W1 between the two halves", "w1_floor", "C2"),
    )
    for offset, (label, name, color) in zip((-width, 0.0, width), bars):
        values = [row[name] for row in rows]
        errors = [row["w1_model_std"] for row in rows] if name == "w1_model" else None
        right.bar(times + offset, values, width, yerr=errors, capsize=3, color=color, label=label)
    right.set_xticks(times, [f"{t:g}" for t in times])
    right.set_xlabel("time")
    right.set_ylabel("W1 to held-out cells (lower is better)")
    right.set_title("Distance of the simulated population to held-out cells")
    right.legend(frameon=False, loc="upper left", fontsize="small")
    right.grid(axis="y", alpha=0.3)
    right.set_axisbelow(True)
    return fig
