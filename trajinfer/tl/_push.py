"""Move the cells of one time point to another time."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._deprecation import UNSET, renamed_keyword
from ..estimator import ActionMatching
from ..trajectories import Trajectories
from ._decode import decode
from ._record import FitRecord, cells_at, fit_record
from ._support import OffSupportWarning, check_support

__all__ = ["push", "simulate", "simulate_cells"]


def simulate(
    adata: AnnData,
    model: ActionMatching,
    from_time: Any,
    to_time: Any = None,
    *,
    n_steps: int = 100,
    stochastic: bool | None = None,
    seed: int | None = None,
    solver: str = "euler",
    method: Any = UNSET,
) -> Trajectories:
    """Trajectories of the cells observed at ``from_time`` up to ``to_time``.

    Parameters
    ----------
    adata
        The AnnData the model was fitted on (or one with the same representation).
    model
        A model from :func:`trajinfer.fit`.
    from_time
        Time label whose cells start the simulation.
    to_time
        Time label or numeric time inside the fitted range (default: the last time point).
        Earlier than ``from_time`` simulates backward (deterministic methods).
    n_steps, stochastic, seed, solver
        See :meth:`trajinfer.ActionMatching.simulate`; ``solver`` is the ODE solver of the
        deterministic methods (default ``"euler"``).
    method
        Deprecated name of ``solver``.

    Returns
    -------
    Trajectories
        Positions in the fitted representation, in the model's time units.
    """
    solver = renamed_keyword(solver, method, function="tl.simulate", old="method", new="solver")
    record = fit_record(model)
    cells = record.representation(adata)[cells_at(adata, record, from_time)]
    return simulate_cells(model, record, cells, from_time, to_time, n_steps=n_steps, stochastic=stochastic, seed=seed, solver=solver)


def simulate_cells(
    model: ActionMatching, record: FitRecord, cells: np.ndarray, from_time: Any, to_time: Any, **params: Any
) -> Trajectories:
    """``model.simulate`` of ``cells`` (in the fitted representation) from time label ``from_time`` to ``to_time``.

    ``to_time=None`` is the last time point; ``params`` go to :meth:`~trajinfer.ActionMatching.simulate`.
    """
    end = record.time_values[-1] if to_time is None else record.label_time(to_time)
    return model.simulate(cells, record.label_time(from_time), end, **params)


def push(
    adata: AnnData,
    model: ActionMatching,
    from_time: Any,
    to_time: Any,
    *,
    n_steps: int = 100,
    stochastic: bool | None = None,
    seed: int | None = None,
) -> AnnData:
    """Push the cells of ``from_time`` to ``to_time`` and return them as a new AnnData.

    The end positions are in ``obsm[use_rep]`` (``obsm['X_rep']`` for a model fitted on
    ``X``). When the representation is ``X_pca`` and ``adata.varm`` has its ``'PCs'``, ``X``
    holds the decoded expression of the pushed cells with the genes of ``adata`` in ``var``
    (see :func:`decode`); otherwise ``X`` holds the end positions. ``obs['source']`` names the
    source cell and ``obs['weight']`` is the importance weight (mean 1 over cells; not 1 only
    for unbalanced methods). ``obs['support_ratio']`` is each pushed cell's distance to the nearest
    observed cell over the cells' typical neighbour distance; ``uns['push']['off_support_fraction']``
    the fraction beyond 3 typical neighbour distances (a warning says when it
    is large: such cells are extrapolation).
    """
    record = fit_record(model)
    X = record.representation(adata)
    source = cells_at(adata, record, from_time)
    traj = simulate_cells(model, record, X[source], from_time, to_time, n_steps=n_steps, stochastic=stochastic, seed=seed)
    sources = adata.obs_names[source]
    end = traj.X[-1].astype(np.float32)
    weights = traj.weights[-1] * traj.n_particles
    check = check_support(end, X, what=f"cells pushed to {to_time}")
    obs = pd.DataFrame({"source": np.asarray(sources), "weight": weights, "support_ratio": check.ratio},
                       index=[f"{s}->{to_time}" for s in sources])
    if record.use_rep == "X_pca" and "PCs" in adata.varm:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OffSupportWarning)  # already checked against all cells above
            pushed = decode(adata, end)
        pushed.obs = obs
    else:
        pushed = AnnData(X=end, obs=obs)
        pushed.obsm["X_rep" if record.use_rep == "X" else record.use_rep] = end
    pushed.uns["push"] = {"from_time": str(from_time), "to_time": str(to_time), "time": float(traj.times[-1]),
                          "off_support_fraction": check.off_support_fraction}
    return pushed
