"""Leave-one-time-point-out validation: the field's standard interpolation benchmark."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from .. import _defaults as defaults
from ..metrics import w1
from ..paths import SnapshotPath
from ..pp import representation, time_labels
from ._fit import fit
from ._record import fit_record

__all__ = ["holdout"]

logger = logging.getLogger(__name__)


def holdout(
    adata: AnnData,
    time_key: str,
    *,
    held_out: list[Any] | None = None,
    max_cells: int = 2000,
    seed: int = 0,
    **fit_params: Any,
) -> pd.DataFrame:
    """Refit without each interior time point and predict it from the previous one.

    For every held-out label ``k`` (default: every time point but the first and the last) the
    model is fitted with :func:`trajinfer.fit` on all other time points, the cells observed at
    the previous time point are pushed to the time of ``k``, and the pushed cells are compared
    with the cells observed at ``k`` by W1 (earth mover's distance, Euclidean cost) in the
    representation. Two baselines sit beside each model row: the cells of the previous time
    point left where they are (*no move*) and samples of the fitted interpolation itself at
    the held-out time (*interpolation*: what the path between the neighbours predicts).

    This is the criterion that ranks interpolations and settings the way test error does:
    :meth:`~trajinfer.ActionMatching.score` compares settings only on one path, since every
    model wins on its own path type.

    Parameters
    ----------
    adata
        Time course, as for :func:`trajinfer.fit`.
    time_key
        Column of ``adata.obs`` with each cell's time label.
    held_out
        Labels to hold out (each must be an interior time point).
    max_cells
        Cells per side in each W1 (subsampled at random beyond it; exact EMD is cubic).
    seed
        Seed of the fits, the simulation and the subsampling.
    **fit_params
        Passed to :func:`trajinfer.fit` (``method``, ``interpolation``, ``n_iter``, ``lr``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per held-out label: ``held_out``, ``time``, ``from``, ``w1_model``,
        ``w1_no_move``, ``w1_interpolation``, ``n_cells``, ``fit_time``, and the fit's own checks
        (the model's ``diagnostics_``): ``gradient_signal`` (about 1 when the
        fit converged) and ``fit_warnings`` (its fit-check messages joined by ``" | "``; empty
        when every check passed).
    """
    labels = time_labels(adata, time_key)
    order = list(labels.mapping)
    interior = order[1:-1]
    if len(order) < 3:
        raise ValueError(f"Leave-one-time-point-out needs at least three time points; {time_key!r} has {len(order)}.")
    targets = interior if held_out is None else list(held_out)
    unknown = [label for label in targets if label not in interior]
    if unknown:
        raise ValueError(f"Only interior time points can be held out ({interior}); got {unknown}.")
    X, _, _ = representation(adata, fit_params.pop("use_rep", None), fit_params.pop("n_comps", None))
    # fit on the representation alone, so that every fold uses the same coordinates (a PCA
    # recomputed without the held-out cells would move them)
    cells = AnnData(obs=adata.obs[[time_key]].copy(), obsm={"X_rep": X})
    values = labels.values
    rng = np.random.default_rng(seed)
    interpolation = fit_params.get("interpolation", defaults.INTERPOLATION)
    rows = []
    for label in targets:
        k = order.index(label)
        t_prev, t_k = labels.mapping[order[k - 1]], labels.mapping[label]
        keep = values != t_k
        start = time.perf_counter()
        model = fit(cells[keep].copy(), time_key, **{**fit_params, "use_rep": "X_rep", "seed": seed})
        fit_time = time.perf_counter() - start
        source, target = X[values == t_prev], X[values == t_k]
        traj = model.simulate(source, t_start=t_prev, t_end=t_k, n_steps=100, seed=seed, progress=False)
        pushed, weights = traj.at(t_k)
        path = SnapshotPath(
            X[keep], values[keep], interpolation=interpolation, pairing=fit_params.get("pairing", "auto"),
            sigma=fit_record(model).sigma, smoothing=fit_params.get("smoothing", "auto"),
        )
        tau = (t_k - path.t_range[0]) / path.duration
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # as many samples as the W1 below compares
            interpolated = path.sample(torch.full((min(len(target), max_cells),), float(tau)), generator).numpy()
        rows.append({
            "held_out": label, "time": t_k, "from": order[k - 1],
            "w1_model": _w1(pushed, target, rng, max_cells, weights),
            "w1_no_move": _w1(source, target, rng, max_cells),
            "w1_interpolation": _w1(interpolated, target, rng, max_cells),
            "n_cells": int(len(target)), "fit_time": fit_time,
            "gradient_signal": model.diagnostics_["gradient_signal"],
            "fit_warnings": " | ".join(model.diagnostics_["warnings"]),
        })
        logger.info("Held out %s: the model's W1 is %.4g, not moving's %.4g.", label, rows[-1]["w1_model"], rows[-1]["w1_no_move"])
    return pd.DataFrame(rows)


def _w1(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, max_cells: int, wa: np.ndarray | None = None) -> float:
    if len(a) > max_cells:
        pick = rng.choice(len(a), max_cells, replace=False)
        a, wa = a[pick], None if wa is None else wa[pick]
    if len(b) > max_cells:
        b = b[rng.choice(len(b), max_cells, replace=False)]
    return w1(a, b, wa=wa)
