"""``tj.fit``: Action Matching on a time-course AnnData."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from anndata import AnnData

from .. import _defaults as defaults
from .._distributed import is_main_process
from .._run import RunConfig, as_run_config
from ..estimator import ActionMatching
from ..losses import is_entropic, is_unbalanced
from ..paths import SnapshotPath
from ..pp import representation, time_labels, write_pca
from ._record import FitRecord, write_record
from ._scverse import velocity_entries, write_velocity_entries
from ._utils import batched

__all__ = ["default_sigma", "fit"]

logger = logging.getLogger(__name__)

SIGMA_FRACTION = 0.1


def default_sigma(X: np.ndarray, times: np.ndarray) -> float:
    """Data-driven diffusion coefficient for the entropic methods.

    ``σ = 0.1 · s / sqrt(Δt̄)``, where ``s`` is the median over time points of the RMS
    per-feature standard deviation of the cells at that time and ``Δt̄`` the mean spacing of
    the time points. Brownian motion then spreads a cell by about a tenth of a snapshot's typical
    width over one sampling interval: enough noise for the stochastic model to matter, small
    against the displacement between snapshots.
    """
    labels = np.unique(times)
    spreads = [np.sqrt(np.mean(np.var(X[times == label], axis=0))) for label in labels]
    mean_step = float(np.mean(np.diff(labels)))
    return float(SIGMA_FRACTION * np.median(spreads) / np.sqrt(mean_step))


def _masses(masses: Any, mapping: Mapping, times: np.ndarray) -> np.ndarray | None:
    if masses is None:
        return None
    if isinstance(masses, str):
        if masses != "counts":
            raise ValueError("masses must be None, 'counts', a mapping label -> mass, or one value per time point.")
        return np.array([np.sum(times == value) for value in mapping.values()], dtype=float)
    if isinstance(masses, Mapping):
        missing = [label for label in mapping if label not in masses]
        if missing:
            raise ValueError(f"masses lacks time labels {missing}.")
        return np.array([float(masses[label]) for label in mapping], dtype=float)
    return np.asarray(masses, dtype=float)


def fit(
    adata: AnnData,
    time_key: str,
    method: str = defaults.METHOD,
    *,
    use_rep: str | None = None,
    n_comps: int | None = None,
    sigma: float | str | None = "auto",
    interpolation: str = defaults.INTERPOLATION,
    pairing: str = "auto",
    n_iter: int | str = "auto",
    batch_size: int = defaults.BATCH_SIZE,
    lr: float | str = "auto",
    hidden_dims: Sequence[int] | str = "auto",
    device: str | None = None,
    seed: int | np.random.Generator = 0,
    progress: bool | None = None,
    run: RunConfig | Mapping[str, Any] | None = None,
    key_added: str = "tj",
    copy: bool = False,
    masses: Any = None,
    smoothing: float | str = "auto",
    growth_scale: float | str = "auto",
    min_cells: int = 2,
    **estimator_params: Any,
) -> ActionMatching | tuple[ActionMatching, AnnData]:
    """Fit Action Matching to the cells of a time course.

    Parameters
    ----------
    adata
        Annotated data, one row per cell. It may be backed (``anndata.read_h5ad(path,
        backed="r")``) for files larger than memory: ``X`` stays on disk and only the
        representation is used, so keep it in ``obsm`` (e.g. ``X_pca``); anndata reads ``obs``
        and ``obsm`` into memory when the file is opened. Results go to the in-memory object;
        ``adata.write_h5ad(new_path)`` saves them, streaming ``X`` from the backing file.
    time_key
        Column of ``adata.obs`` with each cell's collection time: numeric, or (ordered)
        categorical labels; numeric labels such as ``"3"`` or ranges such as ``"0-3"`` keep their
        spacing (days 0, 3, 10 are not equally spaced).
    method
        ``"am"``, ``"eam"`` (default), ``"uam"`` or ``"ueam"``.
    use_rep
        ``obsm`` key or ``"X"``; default ``"X_pca"`` if present, else ``"X"`` with at most 50
        variables, else a PCA computed with a warning.
    n_comps
        Keep the first ``n_comps`` columns of the representation.
    sigma
        Diffusion coefficient for ``eam``/``ueam`` (and the ``"sb"`` interpolation), in
        representation units per sqrt(time unit); ``"auto"`` uses :func:`default_sigma`.
    interpolation
        ``"mixture"`` (default: a mixture of transported, smoothed copies of the snapshots), ``"ot"``,
        ``"sb"`` or ``"learned"`` (a path through every time point trained with the action; see
        :class:`~trajinfer.SnapshotPath`).
    pairing
        How ``"ot"`` and ``"sb"`` pair consecutive snapshots: ``"full"`` (one plan between all
        their cells), ``"minibatch"`` or ``"auto"`` (see :class:`~trajinfer.SnapshotPath`).
    n_iter, batch_size, lr, hidden_dims, seed
        Passed to :class:`~trajinfer.ActionMatching` (``"auto"``: its values on snapshots).
    device, progress
        Where the fit runs (``"auto"``, ``"cpu"``, ``"cuda"``) and whether it shows a progress
        bar; given, they replace the settings of ``run`` (default: ``run``'s, ``"auto"`` and
        a bar).
    run
        Run settings (:class:`~trajinfer.RunConfig`: device, progress, checkpoints,
        ``distributed`` under ``torchrun``, ``grad_accumulation``, ``compile``).
    key_added
        Prefix of the results written to ``adata``.
    copy
        Write results into a copy and return ``(model, adata_copy)``.
    masses
        Unbalanced methods: relative population size per time point (``"counts"`` uses cell
        counts, or a mapping label -> mass); default equal masses.
    growth_scale
        Unbalanced methods: the length scale δ of growth versus transport (see
        :class:`~trajinfer.ActionMatching`); ``"auto"`` uses the data's path length
        :meth:`SnapshotPath.length <trajinfer.SnapshotPath.length>`, so that the observed
        motion is explained by transport and the change of population size by growth,
        whatever the units of the representation.
    smoothing
        Standard deviation of the Gaussian kernel that smooths the snapshots (representation
        units), or ``"auto"``: the data-derived bandwidth that keeps the loss bounded (see
        :class:`~trajinfer.SnapshotPath`).
    min_cells
        Fewest cells allowed per time point.
    **estimator_params
        Other :class:`~trajinfer.ActionMatching` parameters (``cost``, ``ema_decay``, ...).

    Returns
    -------
    model or (model, adata)
        The fitted estimator (``model.metadata_`` holds the :class:`~trajinfer.tl.FitRecord` of the
        time mapping and representation, read with :func:`~trajinfer.tl.fit_record`); with
        ``copy=True`` also the annotated copy.

    Notes
    -----
    Writes ``obsm[f"{key_added}_velocity"]`` (each cell's velocity at its own time),
    ``obs[f"{key_added}_growth"]`` (unbalanced methods) and ``uns[key_added]`` (parameters,
    training curve and the :class:`~trajinfer.tl.FitRecord`). Nothing is written if anything fails.
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"adata must be an AnnData, got {type(adata).__name__}.")
    if copy and adata.isbacked:
        raise ValueError(
            "copy=True would load the backed X into memory. Use copy=False: the results go to the in-memory "
            "obsm/obs/uns, and adata.write_h5ad(new_path) saves them with X streamed from the backing file."
        )
    labels = time_labels(adata, time_key)
    X, rep_key, pending_pca = representation(adata, use_rep, n_comps)
    entropic = is_entropic(method)
    needs_sigma = entropic or interpolation == "sb"
    if sigma is None or (isinstance(sigma, str) and sigma == "auto"):
        sigma_value = default_sigma(X, labels.values) if needs_sigma else None
    elif isinstance(sigma, str):
        raise ValueError(f"sigma must be a positive number or 'auto', got {sigma!r}.")
    else:
        sigma_value = float(sigma)
    path = SnapshotPath(
        X, labels.values, interpolation=interpolation, pairing=pairing, sigma=sigma_value, smoothing=smoothing,
        masses=_masses(masses, labels.mapping, labels.values), min_cells=min_cells,
    )
    if is_unbalanced(method):
        estimator_params["growth_scale"] = path.length() if growth_scale == "auto" else growth_scale
    run = as_run_config(run).replace(
        **{key: value for key, value in (("device", device), ("progress", progress)) if value is not None}
    )
    model = ActionMatching(
        method=method, sigma=sigma_value if entropic else None, hidden_dims=hidden_dims, n_iter=n_iter,
        batch_size=batch_size, lr=lr, seed=seed, run=run, **estimator_params,
    ).fit(path)
    target = adata.copy() if copy else adata
    if pending_pca is not None:
        write_pca(target, pending_pca)
    velocity = batched(model.velocity, X, labels.values)
    scverse = velocity_entries(target, X, velocity, rep_key)
    target.obsm[f"{key_added}_velocity"] = velocity.astype(np.float32)
    if is_unbalanced(method):
        target.obs[f"{key_added}_growth"] = batched(model.growth, X, labels.values).astype(np.float32)
    params = {
        "method": method, "interpolation": interpolation, "pairing": path.pairing, "n_iter": model.n_iter_,
        "batch_size": int(batch_size), "lr": model.lr_, "hidden_dims": np.asarray(model.hidden_dims_),
        "seed": seed if isinstance(seed, int) else -1,
    }
    if sigma_value is not None:
        params["sigma"] = sigma_value
    record = FitRecord(
        time_key=time_key, time_labels=tuple(str(label) for label in labels.mapping),
        time_values=tuple(float(value) for value in labels.mapping.values()), use_rep=rep_key, n_comps=int(X.shape[1]),
        interpolation=interpolation, sigma=sigma_value, key_added=key_added,
    )
    write_record(
        model, target, record, params=params, t_range=np.asarray(model.t_range_), loss_curve=np.asarray(model.loss_curve_),
        fit_time=float(model.fit_time_),
    )
    write_velocity_entries(target, scverse)
    if is_main_process():
        logger.debug("Fitted %s on %d cells, %d time points, representation %r.", method, adata.n_obs, path.n_times, rep_key)
    return (model, target) if copy else model
